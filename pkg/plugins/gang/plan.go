package gang

import (
	"context"
	"fmt"
	"hash/fnv"
	"maps"
	"slices"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework"
	schedv1alpha1 "sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1"
)

// preFilterRunner is the part of the scheduler framework that runs a
// profile's PreFilter plugins; the framework implements it, fwk.Handle does
// not expose it.
type preFilterRunner interface {
	RunPreFilterPlugins(ctx context.Context, state fwk.CycleState, pod *v1.Pod) (*fwk.PreFilterResult, *fwk.Status, sets.Set[string])
}

// simulationKey marks a CycleState as a gang simulation, so that the
// plugin's own PreFilter stands aside when the planner runs PreFilter.
const simulationKey fwk.StateKey = Name + "/simulation"

// joiningKey marks a cycle whose pod PreFilter refused while it joins its
// owners' gang (infer.go), so that PostFilter preempts nothing for it.
const joiningKey fwk.StateKey = Name + "/joining"

// marker is CycleState data that only says its key was written.
type marker struct{}

func (marker) Clone() fwk.StateData { return marker{} }

// placement is the outcome of a simulation.
type placement struct {
	nodes map[types.UID]string
	pods  map[types.UID]*v1.Pod
	// unplaced names the first member that found no node, and why.
	unplaced string
}

// simulator places members on a private copy of the snapshot's nodes.
type simulator struct {
	handle fwk.Handle
	// orderer, if set, ranks nodes for the gang (racks, NVLink domains).
	orderer NodeOrderer
	nodes   []fwk.NodeInfo
	// copies are the nodes changed so far (copy on write).
	copies map[string]fwk.NodeInfo
	// changes are the pods added to (true) or removed from (false) nodes,
	// which each member's PreFilter state must hear about.
	changes []podChange
}

type podChange struct {
	pod   fwk.PodInfo
	node  string
	added bool
}

func newSimulator(handle fwk.Handle, orderer NodeOrderer) (*simulator, error) {
	nodes, err := handle.SnapshotSharedLister().NodeInfos().List()
	if err != nil {
		return nil, fmt.Errorf("listing nodes: %w", err)
	}
	return &simulator{handle: handle, orderer: orderer, nodes: nodes, copies: map[string]fwk.NodeInfo{}}, nil
}

func (s *simulator) node(i int) fwk.NodeInfo {
	name := s.nodes[i].Node().Name
	if c, ok := s.copies[name]; ok {
		return c
	}
	return s.nodes[i]
}

func (s *simulator) writable(name string) fwk.NodeInfo {
	if c, ok := s.copies[name]; ok {
		return c
	}
	for _, n := range s.nodes {
		if n.Node().Name == name {
			c := n.Snapshot()
			s.copies[name] = c
			return c
		}
	}
	return nil
}

// add puts pod on node in the simulation.
func (s *simulator) add(pod *v1.Pod, node string) error {
	n := s.writable(node)
	if n == nil {
		return fmt.Errorf("node %s is not in the snapshot", node)
	}
	p := pod.DeepCopy()
	p.Spec.NodeName = node
	info, err := framework.NewPodInfo(p)
	if err != nil {
		return err
	}
	n.AddPodInfo(info)
	s.changes = append(s.changes, podChange{pod: info, node: node, added: true})
	return nil
}

// remove takes pod off its node in the simulation (a preemption victim).
func (s *simulator) remove(logger klog.Logger, pod *v1.Pod) error {
	n := s.writable(pod.Spec.NodeName)
	if n == nil {
		return nil
	}
	info, err := framework.NewPodInfo(pod)
	if err != nil {
		return err
	}
	if err := n.RemovePod(logger, pod); err != nil {
		return err
	}
	s.changes = append(s.changes, podChange{pod: info, node: pod.Spec.NodeName, added: false})
	return nil
}

// place finds a node for each member in turn, with the profile's PreFilter
// and Filter plugins, trying first the nodes that already hold members of
// the gang, then the others in the orderer's order, or fullest first
// (packing the gang tightly and keeping whole nodes free). Nodes without
// the member's extended resources (GPUs) free are passed over before any
// filter runs. It stops at the first member that fits nowhere.
func (s *simulator) place(ctx context.Context, pods []*v1.Pod) (placement, error) {
	runner := s.handle.(preFilterRunner)
	out := placement{nodes: map[types.UID]string{}, pods: map[types.UID]*v1.Pod{}}
	byName := make(map[string]int, len(s.nodes))
	current := make([]fwk.NodeInfo, len(s.nodes))
	for i, n := range s.nodes {
		byName[n.Node().Name] = i
		current[i] = s.node(i)
	}
	order := fullestFirst(current)
	if s.orderer != nil {
		order = s.orderer.OrderGangNodes(pods, current)
	}
	var gangNodes []int
	for _, pod := range pods {
		state := framework.NewCycleState()
		state.Write(simulationKey, marker{})
		result, status, _ := runner.RunPreFilterPlugins(ctx, state, pod)
		if !status.IsSuccess() {
			out.unplaced = fmt.Sprintf("%s: %s", pod.Name, status.Message())
			return out, nil
		}
		for _, c := range s.changes {
			n := s.writable(c.node)
			var st *fwk.Status
			if c.added {
				st = s.handle.RunPreFilterExtensionAddPod(ctx, state, pod, c.pod, n)
			} else {
				st = s.handle.RunPreFilterExtensionRemovePod(ctx, state, pod, c.pod, n)
			}
			if !st.IsSuccess() {
				return out, fmt.Errorf("updating PreFilter state of %s: %w", pod.Name, st.AsError())
			}
		}
		wants := scalarRequests(pod)
		chosen := ""
		var reasons []string
		for _, i := range slices.Concat(gangNodes, order) {
			n := s.node(i)
			if !result.AllNodes() && !result.NodeNames.Has(n.Node().Name) || !hasScalarRoom(n, wants, s.handle.SharedDRAManager()) {
				continue
			}
			st := s.handle.RunFilterPlugins(ctx, state, pod, n)
			if st.IsSuccess() {
				chosen = n.Node().Name
				break
			}
			if len(reasons) < 3 {
				reasons = append(reasons, st.Message())
			}
		}
		if chosen == "" {
			if len(reasons) == 0 {
				for _, name := range slices.Sorted(maps.Keys(wants)) {
					reasons = append(reasons, "Insufficient "+string(name))
				}
			}
			out.unplaced = fmt.Sprintf("%s fits on no node (%s)", pod.Name, summarize(reasons))
			return out, nil
		}
		if err := s.add(pod, chosen); err != nil {
			return out, err
		}
		if !slices.Contains(gangNodes, byName[chosen]) {
			gangNodes = append(gangNodes, byName[chosen])
		}
		out.nodes[pod.UID] = chosen
		p := pod.DeepCopy()
		p.Spec.NodeName = chosen
		out.pods[pod.UID] = p
	}
	return out, nil
}

// scalarRequests is what a pod asks of each extended resource (GPUs).
func scalarRequests(pod *v1.Pod) map[v1.ResourceName]int64 {
	wants := map[v1.ResourceName]int64{}
	for _, c := range pod.Spec.Containers {
		for name, q := range c.Resources.Requests {
			if isScalar(name) {
				wants[name] += q.Value()
			}
		}
		for name, q := range c.Resources.Limits {
			if _, requested := c.Resources.Requests[name]; !requested && isScalar(name) {
				wants[name] += q.Value()
			}
		}
	}
	return wants
}

func isScalar(name v1.ResourceName) bool {
	return name != v1.ResourceCPU && name != v1.ResourceMemory && name != v1.ResourceEphemeralStorage && name != v1.ResourcePods
}

// hasScalarRoom is a cheap first test before the filters run. A resource
// the node does not advertise but a DeviceClass serves (DRA's extended
// resources, as NodeResourcesFit delegates them) is left to the filters.
func hasScalarRoom(n fwk.NodeInfo, wants map[v1.ResourceName]int64, draManager fwk.SharedDRAManager) bool {
	alloc, req := n.GetAllocatable().GetScalarResources(), n.GetRequested().GetScalarResources()
	for name, want := range wants {
		if alloc[name] == 0 && draManager != nil && draManager.DeviceClassResolver().GetDeviceClass(name) != nil {
			continue
		}
		if alloc[name]-req[name] < want {
			return false
		}
	}
	return true
}

func summarize(reasons []string) string {
	reasons = slices.Compact(slices.Sorted(slices.Values(reasons)))
	if len(reasons) == 0 {
		return "no node passed the filters"
	}
	out := reasons[0]
	for _, r := range reasons[1:] {
		out += "; " + r
	}
	return out
}

// freeScalar is a node's free extended resources (GPUs) in total, for best
// fit; nodes without extended resources sort by free milli-CPU.
func freeScalar(n fwk.NodeInfo) int64 {
	alloc, req := n.GetAllocatable(), n.GetRequested()
	var free int64
	for name, q := range alloc.GetScalarResources() {
		free += q - req.GetScalarResources()[name]
	}
	if free == 0 {
		free = (alloc.GetMilliCPU() - req.GetMilliCPU()) / 1000
	}
	return free
}

// planFingerprint is what a failed plan (or preemption) was computed
// from: the snapshot's nodes, the gang's minMember and its members. A
// failure stands only while none of them changed: a member joining (an
// inferred gang's pods are labelled in one by one) or leaving the pending
// set, or minMember changing, calls for a new plan even when no node did.
func planFingerprint(handle fwk.Handle, pg *schedv1alpha1.PodGroup, m members) int64 {
	f := fingerprint(handle)*31 + int64(pg.Spec.MinMember)
	// Summed per group, so that the order the informer lists members in
	// does not matter.
	for _, group := range [][]*v1.Pod{m.bound, m.waiting, m.pending} {
		var sum uint64
		for _, p := range group {
			h := fnv.New64a()
			_, _ = h.Write([]byte(p.UID))
			sum += h.Sum64()
		}
		f = f*31 + int64(sum>>1)
	}
	return f*31 + int64(m.gated)
}

// fingerprint summarizes the snapshot's node generations: it changes
// whenever a pod or node changes.
func fingerprint(handle fwk.Handle) int64 {
	nodes, err := handle.SnapshotSharedLister().NodeInfos().List()
	if err != nil {
		return -1
	}
	var f int64
	for _, n := range nodes {
		f = f*31 + n.GetGeneration()
	}
	return f + int64(len(nodes))
}
