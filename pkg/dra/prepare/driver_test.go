package prepare

import (
	"context"
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"

	resourceapi "k8s.io/api/resource/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/dynamic-resource-allocation/kubeletplugin"
	"k8s.io/utils/ptr"

	"tessera.dev/tessera/pkg/dra"
)

type inventory map[string]GPU

func (i inventory) GPUs() map[string]GPU { return i }

var fourGPUs = inventory{
	"gpu-0": {UUID: "GPU-0", Minor: 0}, "gpu-1": {UUID: "GPU-1", Minor: 1},
	"gpu-2": {UUID: "GPU-2", Minor: 4}, "gpu-3": {UUID: "GPU-3", Minor: -1},
}

type alloc struct {
	device string
	milli  int64 // 0: the whole GPU
	memory string
}

// allocated is a claim as the scheduler leaves it: allocated on pool
// "n1" (this node) and reserved for a pod.
func allocated(name string, devices ...alloc) *resourceapi.ResourceClaim {
	c := &resourceapi.ResourceClaim{ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: name, UID: types.UID("uid-" + name)}}
	var results []resourceapi.DeviceRequestAllocationResult
	for _, d := range devices {
		r := resourceapi.DeviceRequestAllocationResult{Request: "gpus", Driver: dra.DriverName, Pool: "n1", Device: d.device}
		if d.milli > 0 {
			r.ShareID = ptr.To(types.UID("share-" + name + "-" + d.device))
			r.ConsumedCapacity = map[resourceapi.QualifiedName]resource.Quantity{dra.CapacityMilli: *resource.NewQuantity(d.milli, resource.DecimalSI)}
			if d.memory != "" {
				r.ConsumedCapacity[dra.CapacityMemory] = resource.MustParse(d.memory)
			}
		}
		results = append(results, r)
	}
	c.Status.Allocation = &resourceapi.AllocationResult{Devices: resourceapi.DeviceAllocationResult{Results: results}}
	c.Status.ReservedFor = []resourceapi.ResourceClaimConsumerReference{{Resource: "pods", Name: name + "-pod", UID: types.UID("pod-" + name)}}
	return c
}

func newDriver(t *testing.T, dir string) *Driver {
	t.Helper()
	d, err := New("n1", dir+"/cdi", dir+"/data", fourGPUs)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func prepare(t *testing.T, d *Driver, c *resourceapi.ResourceClaim) kubeletplugin.PrepareResult {
	t.Helper()
	results, err := d.PrepareResourceClaims(context.Background(), []*resourceapi.ResourceClaim{c})
	if err != nil {
		t.Fatal(err)
	}
	return results[c.UID]
}

func spec(t *testing.T, d *Driver, c *resourceapi.ResourceClaim) cdiSpec {
	t.Helper()
	raw, err := os.ReadFile(specPath(d.cdiDir, string(c.UID)))
	if err != nil {
		t.Fatal(err)
	}
	var s cdiSpec
	if err := json.Unmarshal(raw, &s); err != nil {
		t.Fatal(err)
	}
	return s
}

func unprepare(t *testing.T, d *Driver, c *resourceapi.ResourceClaim) {
	t.Helper()
	obj := kubeletplugin.NamespacedObject{NamespacedName: types.NamespacedName{Namespace: c.Namespace, Name: c.Name}, UID: c.UID}
	results, err := d.UnprepareResourceClaims(context.Background(), []kubeletplugin.NamespacedObject{obj})
	if err != nil || results[c.UID] != nil {
		t.Fatalf("unprepare %s: %v, %v", c.Name, err, results[c.UID])
	}
}

// The CDI device of a claim names exactly its GPUs: their device nodes (by
// minor, not index) and NVIDIA_VISIBLE_DEVICES by UUID.
func TestPrepareNamesExactlyTheAllocatedGPUs(t *testing.T) {
	d := newDriver(t, t.TempDir())
	c := allocated("pair", alloc{device: "gpu-1"}, alloc{device: "gpu-2"})
	res := prepare(t, d, c)
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	if len(res.Devices) != 2 || res.Devices[0].DeviceName != "gpu-1" || res.Devices[1].DeviceName != "gpu-2" {
		t.Fatalf("devices %+v, want gpu-1 and gpu-2", res.Devices)
	}
	id := cdiKind + "=uid-pair-gpus"
	if !slices.Equal(res.Devices[0].CDIDeviceIDs, []string{id}) {
		t.Errorf("CDI IDs %v, want [%s] on the request's first device", res.Devices[0].CDIDeviceIDs, id)
	}
	s := spec(t, d, c)
	if len(s.Devices) != 1 || s.Devices[0].Name != "uid-pair-gpus" {
		t.Fatalf("spec devices %+v, want one named uid-pair-gpus", s.Devices)
	}
	edits := s.Devices[0].ContainerEdits
	if !slices.Contains(edits.Env, "NVIDIA_VISIBLE_DEVICES=GPU-1,GPU-2") {
		t.Errorf("env %v, want NVIDIA_VISIBLE_DEVICES=GPU-1,GPU-2", edits.Env)
	}
	if got := []deviceNode{{"/dev/nvidia1"}, {"/dev/nvidia4"}}; !slices.Equal(edits.DeviceNodes, got) {
		t.Errorf("device nodes %v, want %v (gpu-2's minor is 4)", edits.DeviceNodes, got)
	}
}

func TestRefusesWhatItMustNotPrepare(t *testing.T) {
	d := newDriver(t, t.TempDir())
	unreserved := allocated("unreserved", alloc{device: "gpu-0"})
	unreserved.Status.ReservedFor = nil
	unallocated := allocated("unallocated")
	unallocated.Status.Allocation = nil
	elsewhere := allocated("elsewhere", alloc{device: "gpu-0"})
	elsewhere.Status.Allocation.Devices.Results[0].Pool = "n2"
	for c, want := range map[*resourceapi.ResourceClaim]string{
		unreserved:  "not reserved for any pod",
		unallocated: "not allocated",
		elsewhere:   "not on this node",
		allocated("ghost", alloc{device: "gpu-9"}): "which this node does not have",
	} {
		res := prepare(t, d, c)
		if res.Err == nil || !strings.Contains(res.Err.Error(), want) {
			t.Errorf("%s: err %v, want it to say %q", c.Name, res.Err, want)
		}
		if _, err := os.Stat(specPath(d.cdiDir, string(c.UID))); err == nil {
			t.Errorf("%s: a CDI spec was written for a refused claim", c.Name)
		}
	}
}

// 500 + 500 milli fit one GPU; a third share, or a whole-GPU claim, does
// not until one is unprepared.
func TestSharesAreCountedAgainstTheGPU(t *testing.T) {
	d := newDriver(t, t.TempDir())
	a := allocated("a", alloc{device: "gpu-0", milli: 500, memory: "40Gi"})
	b := allocated("b", alloc{device: "gpu-0", milli: 500})
	for _, c := range []*resourceapi.ResourceClaim{a, b} {
		if res := prepare(t, d, c); res.Err != nil {
			t.Fatalf("share %s: %v", c.Name, res.Err)
		}
	}
	env := spec(t, d, a).Devices[0].ContainerEdits.Env
	for _, want := range []string{"TESSERA_GPU_MILLI=500", "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE=50", "CUDA_MPS_PINNED_DEVICE_MEM_LIMIT=GPU-0=40960M"} {
		if !slices.Contains(env, want) {
			t.Errorf("share a env %v, want %s", env, want)
		}
	}
	third := allocated("c", alloc{device: "gpu-0", milli: 500})
	if res := prepare(t, d, third); res.Err == nil || !strings.Contains(res.Err.Error(), "1000 of its 1000 are prepared for team/a, team/b") {
		t.Errorf("third share: err %v, want refused naming the claims holding gpu-0", res.Err)
	}
	whole := allocated("whole", alloc{device: "gpu-0"})
	if res := prepare(t, d, whole); res.Err == nil {
		t.Error("a whole-GPU claim was prepared on a GPU two shares hold")
	}
	unprepare(t, d, b)
	if res := prepare(t, d, third); res.Err != nil {
		t.Errorf("third share after b was unprepared: %v", res.Err)
	}
}

// Prepare twice gives the same result; Unprepare twice is fine; after a
// restart the checkpoint still holds the GPUs, and a spec a reboot cleared
// is written again.
func TestPrepareAndUnprepareAreIdempotentAcrossRestarts(t *testing.T) {
	dir := t.TempDir()
	d := newDriver(t, dir)
	c := allocated("train", alloc{device: "gpu-3"})
	first := prepare(t, d, c)
	if again := prepare(t, d, c); first.Err != nil || again.Err != nil || !slices.EqualFunc(first.Devices, again.Devices, func(a, b kubeletplugin.Device) bool {
		return a.DeviceName == b.DeviceName && slices.Equal(a.CDIDeviceIDs, b.CDIDeviceIDs)
	}) {
		t.Fatalf("prepare twice: %+v then %+v", first, again)
	}

	restarted := newDriver(t, dir)
	if err := os.Remove(specPath(restarted.cdiDir, string(c.UID))); err != nil {
		t.Fatal(err)
	}
	if res := prepare(t, restarted, allocated("rival", alloc{device: "gpu-3"})); res.Err == nil {
		t.Error("after a restart, a second claim was prepared on a GPU the first holds")
	}
	if res := prepare(t, restarted, c); res.Err != nil || len(spec(t, restarted, c).Devices) != 1 {
		t.Errorf("re-prepare after restart: %v; the spec must be back", res.Err)
	}
	unprepare(t, restarted, c)
	unprepare(t, restarted, c)
	if _, err := os.Stat(specPath(restarted.cdiDir, string(c.UID))); err == nil {
		t.Error("the CDI spec is still there after unprepare")
	}
	if res := prepare(t, newDriver(t, dir), allocated("rival", alloc{device: "gpu-3"})); res.Err != nil {
		t.Errorf("gpu-3 still held after unprepare and another restart: %v", res.Err)
	}
}

// A request for shares of two GPUs sets each variable once: the memory
// limits of both GPUs in one list, the smallest share's thread limit.
func TestShareOfTwoGPUsSetsEachVariableOnce(t *testing.T) {
	d := newDriver(t, t.TempDir())
	c := allocated("two-halves", alloc{device: "gpu-0", milli: 500, memory: "20Gi"}, alloc{device: "gpu-1", milli: 300, memory: "10Gi"})
	if res := prepare(t, d, c); res.Err != nil {
		t.Fatal(res.Err)
	}
	env := spec(t, d, c).Devices[0].ContainerEdits.Env
	want := []string{"NVIDIA_VISIBLE_DEVICES=GPU-0,GPU-1", "TESSERA_GPU_MILLI=300", "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE=30", "CUDA_MPS_PINNED_DEVICE_MEM_LIMIT=GPU-0=20480M,GPU-1=10240M"}
	if !slices.Equal(env, want) {
		t.Errorf("env %v, want %v", env, want)
	}
}

// One claim with two results on one GPU counts both against it.
func TestOneClaimCannotTakeAGPUTwiceOver(t *testing.T) {
	d := newDriver(t, t.TempDir())
	c := allocated("greedy", alloc{device: "gpu-0", milli: 600}, alloc{device: "gpu-0", milli: 600})
	if res := prepare(t, d, c); res.Err == nil || !strings.Contains(res.Err.Error(), "needs 1200 milli of gpu-0") {
		t.Errorf("600 + 600 milli of gpu-0 in one claim: err %v, want refused", res.Err)
	}
}

// Before the agent's first read of the GPUs, every claim waits.
func TestPrepareWaitsForTheFirstRead(t *testing.T) {
	dir := t.TempDir()
	d, err := New("n1", dir+"/cdi", dir+"/data", inventory(nil))
	if err != nil {
		t.Fatal(err)
	}
	if res := prepare(t, d, allocated("early", alloc{device: "gpu-0"})); res.Err == nil || !strings.Contains(res.Err.Error(), "not read this node's GPUs yet") {
		t.Errorf("prepare before the first read: err %v", res.Err)
	}
}
