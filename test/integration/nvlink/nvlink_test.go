// Package nvlink_test checks NVLink-topology placement on a real apiserver
// with kwok-simulated GPU nodes: the exact GPUs chosen, their record on the
// pod, gangs kept in one rack, and assignments that survive a restart.
package nvlink_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	schedv1alpha1 "sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1"

	tesserav1alpha1 "tessera.dev/tessera/apis/tessera/v1alpha1"
	"tessera.dev/tessera/internal/gpunodes"
	"tessera.dev/tessera/test/integration/framework"
)

var env *framework.Env

func TestMain(m *testing.M) {
	os.Exit(framework.Main(m, framework.Options{}, &env))
}

// gpuPod is a pod asking for gpus GPUs of tessera-scheduler.
func gpuPod(ns, name string, gpus int64) *corev1.Pod {
	q := *resource.NewQuantity(gpus, resource.DecimalSI)
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.PodSpec{
			SchedulerName: "tessera-scheduler",
			Containers: []corev1.Container{{Name: "main", Image: "vllm/vllm-openai:v0.11.0",
				Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{gpunodes.ResourceGPU: q}}}},
		},
	}
}

// occupy binds a pod holding gpuIDs on node directly, as if scheduled
// before: the GPUs a test wants busy.
func occupy(t *testing.T, ns, node, gpuIDs string) {
	t.Helper()
	n := len(strings.Split(gpuIDs, ","))
	pod := gpuPod(ns, "busy-"+node, int64(n))
	pod.Spec.NodeName = node
	pod.Annotations = map[string]string{tesserav1alpha1.AnnotationGPUIDs: gpuIDs}
	create(t, pod)
}

func create(t *testing.T, pod *corev1.Pod) {
	t.Helper()
	if _, err := env.Client.CoreV1().Pods(pod.Namespace).Create(t.Context(), pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// bound waits until the pod is bound with its GPUs recorded, and returns it.
func bound(t *testing.T, ns, name string) *corev1.Pod {
	t.Helper()
	return env.WaitForPod(t, ns, name, "to be bound with tessera.dev/gpu-ids", func(p *corev1.Pod) bool {
		return p.Spec.NodeName != "" && p.Annotations[tesserav1alpha1.AnnotationGPUIDs] != ""
	})
}

func gpuIDs(t *testing.T, pod *corev1.Pod) []int {
	t.Helper()
	ids, err := tesserav1alpha1.ParseGPUIDs(pod.Annotations[tesserav1alpha1.AnnotationGPUIDs])
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

func TestFourGPUPodGetsOneIslandTheAgentConfirms(t *testing.T) {
	env.StartScheduler(t)
	ns := env.Namespace(t)
	node := env.GPUNode(t, "island-h100", "dgx-h100", "rack-a")
	watch := startAgent(t, node, "dgx-h100")
	occupy(t, ns, node.Name, "0,1,2")

	create(t, gpuPod(ns, "four", 4))
	pod := bound(t, ns, "four")
	ids := gpuIDs(t, pod)
	if len(ids) != 4 || slices.ContainsFunc(ids, func(i int) bool { return i <= 2 }) {
		t.Fatalf("four got GPUs %v, want 4 of the free 3..7", ids)
	}
	topo := topologyOf(t, node.Name)
	if island := islandOf(topo, ids[0]); !slices.ContainsFunc(topo.Status.Islands, func(is tesserav1alpha1.GPUIsland) bool {
		return is.Kind != "None" && containsAll(is.GPUs, ids)
	}) {
		t.Errorf("GPUs %v are not in one NVLink island (GPU %d is in %v)", ids, ids[0], island)
	}

	// The device plugin hands the container those GPUs (by UUID, as it
	// reports them through PodResources); the agent attributes them to
	// the pod and sees no drift from the annotation.
	watch.hold(corev1.ObjectReference{Namespace: ns, Name: "four"}, "main", uuidsOf(topo, ids))
	watch.waitAttributed(t, ns, "four", ids)
}

func TestAfterADriftTheSchedulerTrustsTheKubelet(t *testing.T) {
	stop := env.StartScheduler(t)
	ns := env.Namespace(t)
	node := env.GPUNode(t, "drift-h100", "dgx-h100", "rack-a")
	watch := startAgent(t, node, "dgx-h100")
	occupy(t, ns, node.Name, "0,1,2")

	create(t, gpuPod(ns, "four", 4))
	if ids := gpuIDs(t, bound(t, ns, "four")); !slices.Equal(ids, []int{3, 4, 5, 6}) {
		t.Fatalf("four got GPUs %v, want 3,4,5,6 (the lowest of equal sets)", ids)
	}
	// The device plugin gives the container 4,5,6,7 instead; the agent
	// publishes that, and the one GPU truly free is 3. (The scheduler is
	// restarted meanwhile only so that it has surely read the update: a
	// starting plugin syncs its GPUNodeTopology cache before scheduling.)
	stop()
	topo := topologyOf(t, node.Name)
	watch.hold(corev1.ObjectReference{Namespace: ns, Name: "four"}, "main", uuidsOf(topo, []int{4, 5, 6, 7}))
	framework.Eventually(t, framework.DefaultTimeout, "the agent to publish what four holds", func(ctx context.Context) (bool, error) {
		obj := topologyOf(t, node.Name)
		return len(obj.Status.Holders) == 4 && obj.Status.Holders[0].Index == 4, nil
	})
	env.StartScheduler(t)
	create(t, gpuPod(ns, "one", 1))
	if ids := gpuIDs(t, bound(t, ns, "one")); !slices.Equal(ids, []int{3}) {
		t.Errorf("one got GPU %v, want 3: 7 is held, as the kubelet reports", ids)
	}
}

func TestTwoGPUPodGetsABridgedPair(t *testing.T) {
	env.StartScheduler(t)
	ns := env.Namespace(t)
	env.GPUNode(t, "pairs-h100nvl", "h100-nvl-pairs", "rack-a")
	env.PublishTopology(t, "pairs-h100nvl", "h100-nvl-pairs")
	// Pairs are (0,1) (2,3) (4,5) (6,7); break the first two.
	occupy(t, ns, "pairs-h100nvl", "0,2")

	create(t, gpuPod(ns, "pair", 2))
	if ids := gpuIDs(t, bound(t, ns, "pair")); !slices.Equal(ids, []int{4, 5}) && !slices.Equal(ids, []int{6, 7}) {
		t.Errorf("pair got GPUs %v, want a bridged pair (4,5 or 6,7) while one is free", ids)
	}

	// With every pair broken, a pod that requires one NVLink island waits,
	// saying why; a pod without the requirement takes two unbridged GPUs.
	create(t, gpuPod(ns, "last-pair", 2))
	bound(t, ns, "last-pair")
	strict := gpuPod(ns, "strict", 1)
	strict.Spec.Containers[0].Resources.Limits[gpunodes.ResourceGPU] = resource.MustParse("2")
	strict.Annotations = map[string]string{tesserav1alpha1.AnnotationGPULocality: "nvlink-island"}
	create(t, strict)
	framework.Eventually(t, framework.DefaultTimeout, "strict to be Unschedulable for want of an NVLink island", func(ctx context.Context) (bool, error) {
		p, err := env.Client.CoreV1().Pods(ns).Get(ctx, "strict", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodScheduled && c.Reason == corev1.PodReasonUnschedulable {
				return strings.Contains(c.Message, "no NVLink island with 2 free healthy GPUs"), nil
			}
		}
		return false, nil
	})
	create(t, gpuPod(ns, "loose", 2))
	if ids := gpuIDs(t, bound(t, ns, "loose")); !slices.Equal(ids, []int{1, 3}) {
		t.Errorf("loose got GPUs %v, want the last two free, 1 and 3", ids)
	}
}

func TestGangLandsInTheRackThatHoldsIt(t *testing.T) {
	env.StartScheduler(t)
	ns := env.Namespace(t)
	// Four racks of four DGX H100. One node of racks a, b and d is busy, so
	// only rack c can hold a 4-node gang by itself.
	for _, rack := range []string{"a", "b", "c", "d"} {
		for i := range 4 {
			name := fmt.Sprintf("gang-%s%d", rack, i)
			env.GPUNode(t, name, "dgx-h100", "rack-"+rack)
			env.PublishTopology(t, name, "dgx-h100")
			if rack != "c" && i == 2 {
				occupy(t, ns, name, "0,1,2,3,4,5,6,7")
			}
		}
	}
	pg := &schedv1alpha1.PodGroup{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "llama"},
		Spec:       schedv1alpha1.PodGroupSpec{MinMember: 4, ScheduleTimeoutSeconds: ptr.To[int32](30)},
	}
	if err := env.CR.Create(t.Context(), pg); err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		pod := gpuPod(ns, fmt.Sprintf("llama-%d", i), 8)
		pod.Labels = map[string]string{schedv1alpha1.PodGroupLabel: "llama"}
		create(t, pod)
	}
	racks := map[string]bool{}
	for i := range 4 {
		pod := bound(t, ns, fmt.Sprintf("llama-%d", i))
		racks[strings.TrimPrefix(pod.Spec.NodeName, "gang-")[:1]] = true
	}
	if len(racks) != 1 || !racks["c"] {
		t.Errorf("the 32-GPU gang spans racks %v, want rack c alone", racks)
	}
}

// After a restart the scheduler knows what its pods hold only from their
// annotations. The pods kept are scattered over the node (every other pair
// of GPUs), so that a scheduler guessing their GPUs (the lowest free ones,
// as a search would give them) would hand the same GPUs out again.
func TestRestartNeverAssignsAGPUTwice(t *testing.T) {
	stop := env.StartScheduler(t)
	ns := env.Namespace(t)
	env.GPUNode(t, "restart-h100", "dgx-h100", "rack-a")
	env.PublishTopology(t, "restart-h100", "dgx-h100")
	var pods []*corev1.Pod
	for i := range 4 {
		create(t, gpuPod(ns, fmt.Sprintf("before-%d", i), 2))
		pods = append(pods, bound(t, ns, fmt.Sprintf("before-%d", i)))
	}
	// Keep the pods on the higher GPUs of each half of the node.
	slices.SortFunc(pods, func(a, b *corev1.Pod) int { return slices.Min(gpuIDs(t, a)) - slices.Min(gpuIDs(t, b)) })
	var kept []*corev1.Pod
	for i, p := range pods {
		if i%2 == 0 {
			if err := env.Client.CoreV1().Pods(ns).Delete(t.Context(), p.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}); err != nil {
				t.Fatal(err)
			}
			continue
		}
		kept = append(kept, p)
	}
	if ids := gpuIDs(t, kept[0]); slices.Min(ids) == 0 {
		t.Fatalf("kept pod holds GPU 0 (%v): the test needs the lowest GPUs free", ids)
	}
	framework.Eventually(t, framework.DefaultTimeout, "the deleted pods to be gone", func(ctx context.Context) (bool, error) {
		list, err := env.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		return err == nil && len(list.Items) == len(kept), err
	})

	stop()
	env.StartScheduler(t)
	for i := range 2 {
		create(t, gpuPod(ns, fmt.Sprintf("after-%d", i), 2))
		kept = append(kept, bound(t, ns, fmt.Sprintf("after-%d", i)))
	}

	held := map[int]string{}
	for _, p := range kept {
		for _, id := range gpuIDs(t, p) {
			if other, taken := held[id]; taken {
				t.Errorf("GPU %d assigned to both %s and %s", id, other, p.Name)
			}
			held[id] = p.Name
		}
	}
	if len(held) != 8 {
		t.Errorf("4 pods of 2 GPUs hold %d distinct GPUs, want 8: %v", len(held), held)
	}
}

func containsAll(set []int32, ids []int) bool {
	for _, id := range ids {
		if !slices.Contains(set, int32(id)) {
			return false
		}
	}
	return true
}

func islandOf(topo *tesserav1alpha1.GPUNodeTopology, gpu int) []int32 {
	for _, is := range topo.Status.Islands {
		if slices.Contains(is.GPUs, int32(gpu)) {
			return is.GPUs
		}
	}
	return nil
}

func uuidsOf(topo *tesserav1alpha1.GPUNodeTopology, ids []int) []string {
	var uuids []string
	for _, d := range topo.Status.Devices {
		if slices.Contains(ids, int(d.Index)) {
			uuids = append(uuids, d.UUID)
		}
	}
	return uuids
}

func TestInvalidArgsFailStartUp(t *testing.T) {
	stop, err := env.StartSchedulerWithConfig(t, func(config string) string {
		return strings.Replace(config, "defaultLocality: none", "defaultLocality: island", 1)
	})
	if err == nil {
		stop()
		t.Fatal("scheduler started with defaultLocality: island")
	}
	want := `args.defaultLocality: Unsupported value: "island": supported values: "none", "nvlink-island"`
	if !strings.Contains(err.Error(), want) {
		t.Errorf("start-up error %q does not name the field and the values", err)
	}
}
