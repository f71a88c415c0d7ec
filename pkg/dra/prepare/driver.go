// Package prepare is the kubelet side of driver gpu.tessera.dev: it prepares
// the GPUs allocated to a ResourceClaim for its containers, writing a CDI
// spec per claim that names exactly those GPUs (device nodes and
// NVIDIA_VISIBLE_DEVICES by UUID) and, for a share, its MPS limits. It is
// the last line of defence against a GPU given twice: a claim not reserved
// for a pod, a device this node does not have, or more of a GPU than it
// has is refused. Prepared claims are checkpointed, so that Prepare and
// Unprepare stay idempotent across restarts.
package prepare

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"

	resourceapi "k8s.io/api/resource/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/dynamic-resource-allocation/kubeletplugin"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"

	tesserav1alpha1 "tessera.dev/tessera/apis/tessera/v1alpha1"
	"tessera.dev/tessera/pkg/dra"
)

// GPU is what preparing needs of one of the node's GPUs.
type GPU struct {
	UUID string
	// Minor is its /dev/nvidia<Minor>; -1 when unknown (then only
	// NVIDIA_VISIBLE_DEVICES names it, for the NVIDIA runtime to resolve).
	Minor int
}

// Inventory is the node's GPUs by DRA device name (dra.DeviceName), as
// last read by the node agent.
type Inventory interface {
	GPUs() map[string]GPU
}

// Driver implements kubeletplugin.DRAPlugin for one node.
type Driver struct {
	node       string
	cdiDir     string
	checkpoint string
	inventory  Inventory

	mu       sync.Mutex
	prepared map[types.UID]*claimState
}

var _ kubeletplugin.DRAPlugin = &Driver{}

// claimState is a prepared claim, as checkpointed.
type claimState struct {
	Namespace string           `json:"namespace"`
	Name      string           `json:"name"`
	Devices   []preparedGPU    `json:"devices"`
	Results   []preparedResult `json:"results"`
	// Spec is its CDI spec, written again if a reboot cleared it.
	Spec cdiSpec `json:"spec"`
}

// preparedGPU is one allocated GPU and how much of it the claim holds.
type preparedGPU struct {
	Device string `json:"device"`
	Milli  int64  `json:"milli"`
}

type preparedResult struct {
	Request string `json:"request"`
	Pool    string `json:"pool"`
	Device  string `json:"device"`
	CDIID   string `json:"cdiID,omitempty"`
	ShareID string `json:"shareID,omitempty"`
}

// New returns the driver for node, writing CDI specs into cdiDir and its
// checkpoint into dataDir, restored from a checkpoint there if any.
func New(node, cdiDir, dataDir string, inventory Inventory) (*Driver, error) {
	for _, dir := range []string{cdiDir, dataDir} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
	}
	d := &Driver{node: node, cdiDir: cdiDir, checkpoint: filepath.Join(dataDir, "prepared-claims.json"), inventory: inventory, prepared: map[types.UID]*claimState{}}
	raw, err := os.ReadFile(d.checkpoint)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("reading the checkpoint: %w", err)
	default:
		if err := json.Unmarshal(raw, &d.prepared); err != nil {
			return nil, fmt.Errorf("checkpoint %s is unreadable: %w", d.checkpoint, err)
		}
	}
	return d, nil
}

// PrepareResourceClaims prepares each claim, or says per claim why not.
func (d *Driver) PrepareResourceClaims(ctx context.Context, claims []*resourceapi.ResourceClaim) (map[types.UID]kubeletplugin.PrepareResult, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	gpus := d.inventory.GPUs()
	results := make(map[types.UID]kubeletplugin.PrepareResult, len(claims))
	for _, c := range claims {
		if gpus == nil {
			// The kubelet retries; the agent reads NVML within seconds.
			results[c.UID] = kubeletplugin.PrepareResult{Err: errors.New("the node agent has not read this node's GPUs yet")}
			continue
		}
		state, err := d.prepare(c, gpus)
		if err != nil {
			klog.FromContext(ctx).Info("Refused to prepare a claim", "claim", klog.KObj(c), "err", err)
			results[c.UID] = kubeletplugin.PrepareResult{Err: err}
			continue
		}
		results[c.UID] = state.result()
	}
	if err := d.save(); err != nil {
		return nil, err
	}
	return results, nil
}

func (d *Driver) prepare(c *resourceapi.ResourceClaim, gpus map[string]GPU) (*claimState, error) {
	if state, ok := d.prepared[c.UID]; ok {
		// The kubelet asks again after a restart; the spec may be gone
		// with a reboot's tmpfs.
		return state, writeSpec(specPath(d.cdiDir, string(c.UID)), state.Spec)
	}
	key := c.Namespace + "/" + c.Name
	if c.Status.Allocation == nil {
		return nil, fmt.Errorf("claim %s is not allocated", key)
	}
	if len(c.Status.ReservedFor) == 0 {
		return nil, fmt.Errorf("claim %s is not reserved for any pod", key)
	}
	state := &claimState{Namespace: c.Namespace, Name: c.Name}
	byRequest := map[string][]resourceapi.DeviceRequestAllocationResult{}
	var requests []string
	// What this claim itself takes of each GPU, across its results.
	taking := map[string]int64{}
	for _, r := range c.Status.Allocation.Devices.Results {
		if r.Driver != dra.DriverName {
			continue
		}
		if r.Pool != d.node {
			return nil, fmt.Errorf("claim %s has %s allocated in pool %s, not on this node (%s)", key, r.Device, r.Pool, d.node)
		}
		if _, ok := gpus[r.Device]; !ok {
			return nil, fmt.Errorf("claim %s has %s allocated, which this node does not have", key, r.Device)
		}
		milli := int64(dra.MilliGPU)
		switch {
		case ptr.Deref(r.AdminAccess, false):
			// Admin access (monitoring) shares the GPU without taking any.
			milli = 0
		case r.ShareID != nil:
			if q, ok := r.ConsumedCapacity[dra.CapacityMilli]; ok {
				milli = q.Value()
			}
		}
		taking[r.Device] += milli
		if held, by := d.held(r.Device); held+taking[r.Device] > dra.MilliGPU {
			return nil, fmt.Errorf("claim %s needs %d milli of %s, but %d of its %d are prepared for %s", key, taking[r.Device], r.Device, held, dra.MilliGPU, strings.Join(by, ", "))
		}
		state.Devices = append(state.Devices, preparedGPU{Device: r.Device, Milli: milli})
		if _, seen := byRequest[r.Request]; !seen {
			requests = append(requests, r.Request)
		}
		byRequest[r.Request] = append(byRequest[r.Request], r)
	}
	spec := cdiSpec{Version: cdiVersion, Kind: cdiKind, ContainerEdits: containerEdits{DeviceNodes: controlDeviceNodes}}
	for _, req := range requests {
		name := string(c.UID) + "-" + cdiName(req)
		var edits containerEdits
		var uuids []string
		for _, r := range byRequest[req] {
			gpu := gpus[r.Device]
			uuids = append(uuids, gpu.UUID)
			if gpu.Minor >= 0 {
				edits.DeviceNodes = append(edits.DeviceNodes, deviceNode{Path: fmt.Sprintf("/dev/nvidia%d", gpu.Minor)})
			}
		}
		edits.Env = append([]string{"NVIDIA_VISIBLE_DEVICES=" + strings.Join(uuids, ",")}, shareEnv(byRequest[req], gpus)...)
		spec.Devices = append(spec.Devices, cdiDevice{Name: name, ContainerEdits: edits})
		for i, r := range byRequest[req] {
			res := preparedResult{Request: r.Request, Pool: r.Pool, Device: r.Device}
			if i == 0 {
				// One CDI device per request carries all its GPUs: the
				// runtime would let one GPU's NVIDIA_VISIBLE_DEVICES
				// override another's.
				res.CDIID = cdiDeviceID(name)
			}
			if r.ShareID != nil {
				res.ShareID = string(*r.ShareID)
			}
			state.Results = append(state.Results, res)
		}
	}
	if err := writeSpec(specPath(d.cdiDir, string(c.UID)), spec); err != nil {
		return nil, err
	}
	state.Spec = spec
	d.prepared[c.UID] = state
	return state, nil
}

// shareEnv is what a request's containers are told of their part of each
// GPU, once per request (a variable set twice keeps one value); nothing for
// whole GPUs. The MPS limits hold only where an MPS control daemon serves
// the GPU; without one the GPU is time-sliced between its shares with no
// isolation. The thread limit is the smallest share's: MPS takes one.
func shareEnv(results []resourceapi.DeviceRequestAllocationResult, gpus map[string]GPU) []string {
	var least int64
	var limits []string
	for _, r := range results {
		if r.ShareID == nil {
			continue
		}
		milli := r.ConsumedCapacity[dra.CapacityMilli]
		if least == 0 || milli.Value() < least {
			least = milli.Value()
		}
		if mem, ok := r.ConsumedCapacity[dra.CapacityMemory]; ok && mem.Value() > 0 {
			limits = append(limits, fmt.Sprintf("%s=%dM", gpus[r.Device].UUID, mem.Value()>>20))
		}
	}
	if least == 0 {
		return nil
	}
	env := []string{
		fmt.Sprintf("TESSERA_GPU_MILLI=%d", least),
		fmt.Sprintf("CUDA_MPS_ACTIVE_THREAD_PERCENTAGE=%d", max(1, least/10)),
	}
	if len(limits) > 0 {
		env = append(env, "CUDA_MPS_PINNED_DEVICE_MEM_LIMIT="+strings.Join(limits, ","))
	}
	return env
}

// cdiName makes a request name (possibly "request/subrequest") a valid CDI
// device name.
func cdiName(request string) string { return strings.ReplaceAll(request, "/", "-") }

// held is how much of device the prepared claims hold, and which claims.
func (d *Driver) held(device string) (int64, []string) {
	var milli int64
	var by []string
	for _, state := range d.prepared {
		for _, g := range state.Devices {
			if g.Device == device {
				milli += g.Milli
				by = append(by, state.Namespace+"/"+state.Name)
			}
		}
	}
	sort.Strings(by)
	return milli, slices.Compact(by)
}

func (s *claimState) result() kubeletplugin.PrepareResult {
	var out kubeletplugin.PrepareResult
	for _, r := range s.Results {
		dev := kubeletplugin.Device{Requests: []string{r.Request}, PoolName: r.Pool, DeviceName: r.Device}
		if r.CDIID != "" {
			dev.CDIDeviceIDs = []string{r.CDIID}
		}
		if r.ShareID != "" {
			id := types.UID(r.ShareID)
			dev.ShareID = &id
		}
		out.Devices = append(out.Devices, dev)
	}
	return out
}

// UnprepareResourceClaims removes each claim's CDI spec and forgets it;
// a claim not prepared (again, or never) is no error.
func (d *Driver) UnprepareResourceClaims(_ context.Context, claims []kubeletplugin.NamespacedObject) (map[types.UID]error, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	results := make(map[types.UID]error, len(claims))
	for _, c := range claims {
		err := os.Remove(specPath(d.cdiDir, string(c.UID)))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			results[c.UID] = fmt.Errorf("removing the CDI spec of %s: %w", c.NamespacedName, err)
			continue
		}
		delete(d.prepared, c.UID)
		results[c.UID] = nil
	}
	return results, d.save()
}

// HandleError logs errors of the helper's background work.
func (d *Driver) HandleError(ctx context.Context, err error, msg string) {
	klog.FromContext(ctx).Error(err, "DRA kubelet plugin", "detail", msg)
}

// save writes the checkpoint atomically.
func (d *Driver) save() error {
	raw, err := json.Marshal(d.prepared)
	if err != nil {
		return err
	}
	tmp := d.checkpoint + ".tmp"
	if err := os.WriteFile(tmp, raw, 0o600); err != nil {
		return fmt.Errorf("writing the checkpoint: %w", err)
	}
	return os.Rename(tmp, d.checkpoint)
}

// StatusInventory reads the GPUs from the node agent's last read
// (nodeagent.Agent.Status): the model the ResourceSlice is built from.
type StatusInventory func() *tesserav1alpha1.GPUNodeTopologyStatus

// GPUs returns every GPU of the last read, healthy or not: a claim
// allocated before a fault is still the claim's to prepare.
func (f StatusInventory) GPUs() map[string]GPU {
	status := f()
	if status == nil {
		return nil
	}
	gpus := make(map[string]GPU, len(status.Devices))
	for _, g := range status.Devices {
		minor := -1
		if g.MinorNumber != nil {
			minor = int(*g.MinorNumber)
		}
		gpus[dra.DeviceName(g.Index)] = GPU{UUID: g.UUID, Minor: minor}
	}
	return gpus
}
