package dra_test

import (
	"context"
	"fmt"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	resourceapi "k8s.io/api/resource/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/component-base/metrics/legacyregistry"
	"k8s.io/utils/ptr"
	schedv1alpha1 "sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1"

	tesserav1alpha1 "tessera.dev/tessera/apis/tessera/v1alpha1"
	"tessera.dev/tessera/internal/cluster"
	"tessera.dev/tessera/internal/gpunodes"
	"tessera.dev/tessera/pkg/dra"
	"tessera.dev/tessera/test/integration/framework"
)

// draNode creates a simulated node of shape whose GPUs are served through
// DRA only: its GPUNodeTopology, and the ResourceSlice the node agent
// builds from it (dra.Devices), and no nvidia.com/gpu device plugin
// resource. It also installs the chart's DeviceClass.
func draNode(t *testing.T, name, shapeName string) {
	t.Helper()
	rendered := env.RenderChart(t, []string{"templates/dra/deviceclass.yaml"}, "dra.enabled=true")
	if err := cluster.ApplyFromFiles(t.Context(), env.CR, rendered); err != nil {
		t.Fatal(err)
	}
	env.GPUNodeWith(t, name, shapeName, "rack-dra", func(n *corev1.Node) {
		delete(n.Status.Capacity, gpunodes.ResourceGPU)
		delete(n.Status.Allocatable, gpunodes.ResourceGPU)
	})
	topo := env.PublishTopology(t, name, shapeName)
	slice := &resourceapi.ResourceSlice{
		ObjectMeta: metav1.ObjectMeta{Name: name + "-" + dra.DriverName},
		Spec: resourceapi.ResourceSliceSpec{
			Driver:   dra.DriverName,
			Pool:     resourceapi.ResourcePool{Name: name, Generation: 1, ResourceSliceCount: 1},
			NodeName: ptr.To(name),
			Devices:  dra.Devices(&topo.Status, nil),
		},
	}
	if _, err := env.Client.ResourceV1().ResourceSlices().Create(t.Context(), slice, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		err := env.Client.ResourceV1().ResourceSlices().Delete(context.Background(), slice.Name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("deleting ResourceSlice %s: %v", slice.Name, err)
		}
	})
}

// claimTemplate creates a template asking count GPUs of the class, each
// milli of one (0: whole), matching selector (CEL) if set.
func claimTemplate(t *testing.T, ns, name string, count, milli int64, selector string) {
	t.Helper()
	req := &resourceapi.ExactDeviceRequest{DeviceClassName: dra.DeviceClassName, Count: count}
	if milli > 0 {
		req.Capacity = &resourceapi.CapacityRequirements{Requests: map[resourceapi.QualifiedName]resource.Quantity{
			dra.CapacityMilli: *resource.NewQuantity(milli, resource.DecimalSI)}}
	}
	if selector != "" {
		req.Selectors = []resourceapi.DeviceSelector{{CEL: &resourceapi.CELDeviceSelector{Expression: selector}}}
	}
	tpl := &resourceapi.ResourceClaimTemplate{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: resourceapi.ResourceClaimTemplateSpec{Spec: resourceapi.ResourceClaimSpec{Devices: resourceapi.DeviceClaim{
			Requests: []resourceapi.DeviceRequest{{Name: "gpu", Exactly: req}},
		}}},
	}
	if _, err := env.Client.ResourceV1().ResourceClaimTemplates(ns).Create(t.Context(), tpl, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// gpuPod creates a pod of the tessera-scheduler on node: with template, a
// claim made from it; with gpus, that many nvidia.com/gpu, unchanged.
func gpuPod(t *testing.T, ns, name, node, template string, gpus int64, edit ...func(*corev1.Pod)) {
	t.Helper()
	c := corev1.Container{Name: "worker", Image: "trainer", Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1")}}}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.PodSpec{
			SchedulerName: "tessera-scheduler",
			NodeSelector:  map[string]string{corev1.LabelHostname: node},
		},
	}
	if gpus > 0 {
		c.Resources.Limits[gpunodes.ResourceGPU] = *resource.NewQuantity(gpus, resource.DecimalSI)
	}
	if template != "" {
		pod.Spec.ResourceClaims = []corev1.PodResourceClaim{{Name: "gpu", ResourceClaimTemplateName: ptr.To(template)}}
		c.Resources.Claims = []corev1.ResourceClaim{{Name: "gpu"}}
	}
	pod.Spec.Containers = []corev1.Container{c}
	for _, e := range edit {
		e(pod)
	}
	if _, err := env.Client.CoreV1().Pods(ns).Create(t.Context(), pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// allocation is what a bound pod's claims of Tessera's driver hold on its
// node: milli of each GPU, by NVML index.
type allocation map[int]int64

func (a allocation) indexes() []int {
	out := make([]int, 0, len(a))
	for i := range a {
		out = append(out, i)
	}
	slices.Sort(out)
	return out
}

// allocationOf reads the allocations of the claims reserved for pod.
func allocationOf(ctx context.Context, pod *corev1.Pod) (allocation, error) {
	list, err := env.Client.ResourceV1().ResourceClaims(pod.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	out := allocation{}
	for _, c := range list.Items {
		if c.Status.Allocation == nil || !slices.ContainsFunc(c.Status.ReservedFor, func(r resourceapi.ResourceClaimConsumerReference) bool { return r.UID == pod.UID }) {
			continue
		}
		for _, r := range c.Status.Allocation.Devices.Results {
			if r.Driver != dra.DriverName || r.Pool != pod.Spec.NodeName {
				continue
			}
			i, ok := dra.DeviceIndex(r.Device)
			if !ok {
				return nil, fmt.Errorf("claim %s: device %q is not one the driver publishes", c.Name, r.Device)
			}
			milli := int64(dra.MilliGPU)
			if q, ok := r.ConsumedCapacity[dra.CapacityMilli]; ok {
				milli = q.Value()
			}
			out[i] += milli
		}
	}
	return out, nil
}

// boundWithAllocation waits until the pod is bound and its claims are
// allocated, and checks that tessera.dev/gpu-ids names exactly the
// allocated GPUs.
func boundWithAllocation(t *testing.T, ns, name string) (*corev1.Pod, allocation) {
	t.Helper()
	var pod *corev1.Pod
	var got allocation
	framework.Eventually(t, framework.DefaultTimeout, fmt.Sprintf("pod %s bound with its claims allocated", name), func(ctx context.Context) (bool, error) {
		p, err := env.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil || p.Spec.NodeName == "" {
			return false, err
		}
		pod = p
		got, err = allocationOf(ctx, p)
		return len(got) > 0, err
	})
	if ids := pod.Annotations[tesserav1alpha1.AnnotationGPUIDs]; ids != tesserav1alpha1.FormatGPUIDs(got.indexes()) {
		t.Errorf("pod %s: %s=%q, but its claims were allocated GPUs %v", name, tesserav1alpha1.AnnotationGPUIDs, ids, got.indexes())
	}
	return pod, got
}

// logPodsOnFailure logs the namespace's pods and events if the test fails:
// why a pod waits is in its conditions and events.
func logPodsOnFailure(t *testing.T, ns string) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		pods, err := env.Client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{})
		if err != nil {
			t.Logf("listing pods: %v", err)
			return
		}
		for _, p := range pods.Items {
			t.Logf("pod %s on %q, %s=%q, conditions %+v", p.Name, p.Spec.NodeName, tesserav1alpha1.AnnotationGPUIDs, p.Annotations[tesserav1alpha1.AnnotationGPUIDs], p.Status.Conditions)
		}
		events, err := env.Client.CoreV1().Events(ns).List(context.Background(), metav1.ListOptions{})
		if err != nil {
			t.Logf("listing events: %v", err)
			return
		}
		for _, e := range events.Items {
			t.Logf("event %s %s: %s", e.InvolvedObject.Name, e.Reason, e.Message)
		}
	})
}

// disagreements reads tessera_dra_allocation_disagreements_total, over
// profiles, from the scheduler running in this process.
func disagreements(t *testing.T) float64 {
	t.Helper()
	families, err := legacyregistry.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, f := range families {
		if f.GetName() != "tessera_dra_allocation_disagreements_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}

// nvlinkPairs are the bridged pairs of the h100-nvl-pairs shape.
var nvlinkPairs = [][]int{{0, 1}, {2, 3}, {4, 5}, {6, 7}}

// Claims are allocated the GPUs Tessera chose, not the allocator's first
// fit: with GPUs 0 and 7 of an NVLink-bridged-pairs node taken (claims
// whose selectors allow only them), first fit would give a 2-GPU request
// GPUs 1 and 2, across two bridges. An unchanged nvidia.com/gpu: 2 pod
// (through the DeviceClass's extendedResourceName) and a 2-GPU claim
// template both get a bridged pair, the one Tessera chose. Every pod's
// tessera.dev/gpu-ids is its allocation, also where a claim's selector
// overrode Tessera's choice, which is counted as a disagreement.
func TestClaimsAreAllocatedTheGPUsTesseraChose(t *testing.T) {
	env.StartScheduler(t)
	ns := env.Namespace(t)
	logPodsOnFailure(t, ns)
	const node = "dra-pairs"
	draNode(t, node, "h100-nvl-pairs")
	claimTemplate(t, ns, "gpu-0", 1, 0, `device.attributes["gpu.tessera.dev"].index == 0`)
	claimTemplate(t, ns, "gpu-7", 1, 0, `device.attributes["gpu.tessera.dev"].index == 7`)
	claimTemplate(t, ns, "two-gpus", 2, 0, "")

	gpuPod(t, ns, "pinned-0", node, "gpu-0", 0)
	if _, got := boundWithAllocation(t, ns, "pinned-0"); !slices.Equal(got.indexes(), []int{0}) {
		t.Fatalf("pod pinned-0 allocated GPUs %v, want [0]", got.indexes())
	}
	// Tessera puts a one-GPU pod on GPU 1, whose bridge partner is taken;
	// the claim allows only GPU 7, and the pod's annotation must say 7.
	before := disagreements(t)
	gpuPod(t, ns, "pinned-7", node, "gpu-7", 0)
	if _, got := boundWithAllocation(t, ns, "pinned-7"); !slices.Equal(got.indexes(), []int{7}) {
		t.Fatalf("pod pinned-7 allocated GPUs %v, want [7]", got.indexes())
	}
	if d := disagreements(t) - before; d != 1 {
		t.Errorf("disagreements counted for pod pinned-7: %v, want 1", d)
	}
	before = disagreements(t)
	gpuPod(t, ns, "extended", node, "", 2)
	_, extended := boundWithAllocation(t, ns, "extended")
	gpuPod(t, ns, "claimed", node, "two-gpus", 0)
	_, claimed := boundWithAllocation(t, ns, "claimed")
	for name, got := range map[string]allocation{"extended": extended, "claimed": claimed} {
		if !slices.ContainsFunc(nvlinkPairs, func(p []int) bool { return slices.Equal(p, got.indexes()) }) {
			t.Errorf("pod %s allocated GPUs %v, want an NVLink-bridged pair", name, got.indexes())
		}
	}
	if slices.Equal(extended.indexes(), claimed.indexes()) {
		t.Errorf("pods extended and claimed were both allocated GPUs %v", extended.indexes())
	}
	if d := disagreements(t) - before; d != 0 {
		t.Errorf("%v pods' claims were allocated other GPUs than Tessera chose, want none", d)
	}
}

// A burst of shares on one node never holds a GPU beyond its capacity:
// thirteen 300-milli claims on four GPUs place twelve (three a GPU), each
// on the GPU Tessera chose and named by its pod's tessera.dev/gpu-ids, and
// the thirteenth waits, unschedulable.
func TestShareBurstNeverExceedsAGPU(t *testing.T) {
	env.StartScheduler(t)
	ns := env.Namespace(t)
	logPodsOnFailure(t, ns)
	const node = "dra-shares"
	draNode(t, node, "l4-pcie")
	before := disagreements(t)
	claimTemplate(t, ns, "share", 1, 300, "")
	const pods = 13
	for i := range pods {
		gpuPod(t, ns, fmt.Sprintf("share-%d", i), node, "share", 0)
	}
	held := allocation{}
	framework.Eventually(t, framework.DefaultTimeout, "twelve shares bound and one unschedulable", func(ctx context.Context) (bool, error) {
		list, err := env.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		bound, waiting := 0, 0
		for i := range list.Items {
			p := &list.Items[i]
			if p.Spec.NodeName != "" {
				bound++
				continue
			}
			for _, c := range p.Status.Conditions {
				if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
					waiting++
				}
			}
		}
		return bound == pods-1 && waiting == 1, nil
	})
	for i := range pods {
		name := fmt.Sprintf("share-%d", i)
		pod, err := env.Client.CoreV1().Pods(ns).Get(t.Context(), name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if pod.Spec.NodeName == "" {
			continue
		}
		_, got := boundWithAllocation(t, ns, name)
		for gpu, milli := range got {
			held[gpu] += milli
		}
	}
	for gpu, milli := range held {
		if milli > dra.MilliGPU {
			t.Errorf("GPU %d holds %d milli of shares", gpu, milli)
		}
	}
	if len(held) != 4 {
		t.Errorf("shares on GPUs %v, want all four", held.indexes())
	}
	// Tessera counts the claims' shares as the allocator does: each share
	// went to the GPU it chose.
	if d := disagreements(t) - before; d != 0 {
		t.Errorf("%v shares were allocated another GPU than Tessera chose, want none", d)
	}
}

// A gang of unchanged nvidia.com/gpu pods on DRA nodes: every member gets
// its claim, on GPUs no other member holds, and tessera.dev/gpu-ids names
// them. What this pins is the gang plan: the node does not advertise
// nvidia.com/gpu, and the plan must leave that to DRA.
func TestGangMembersAllGetClaims(t *testing.T) {
	env.StartScheduler(t)
	ns := env.Namespace(t)
	logPodsOnFailure(t, ns)
	const node = "dra-gang"
	draNode(t, node, "dgx-h100")
	pg := &schedv1alpha1.PodGroup{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "trainer"},
		Spec:       schedv1alpha1.PodGroupSpec{MinMember: 2, ScheduleTimeoutSeconds: ptr.To[int32](60)},
	}
	if err := env.CR.Create(t.Context(), pg); err != nil {
		t.Fatal(err)
	}
	inGang := func(p *corev1.Pod) { p.Labels = map[string]string{schedv1alpha1.PodGroupLabel: "trainer"} }
	gpuPod(t, ns, "trainer-0", node, "", 4, inGang)
	gpuPod(t, ns, "trainer-1", node, "", 4, inGang)
	_, first := boundWithAllocation(t, ns, "trainer-0")
	_, second := boundWithAllocation(t, ns, "trainer-1")
	if len(first) != 4 || len(second) != 4 {
		t.Fatalf("members allocated GPUs %v and %v, want four each", first.indexes(), second.indexes())
	}
	for gpu := range first {
		if _, ok := second[gpu]; ok {
			t.Errorf("GPU %d allocated to both members", gpu)
		}
	}
}
