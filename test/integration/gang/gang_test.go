// Package gang_test checks all-or-nothing gang scheduling on a real
// apiserver with kwok nodes and Tessera's scheduler in-process.
package gang_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/utils/ptr"
	schedv1alpha1 "sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1"

	"tessera.dev/tessera/internal/gpunodes"
	"tessera.dev/tessera/test/integration/framework"
)

var env *framework.Env

func TestMain(m *testing.M) {
	os.Exit(framework.Main(m, framework.Options{}, &env))
}

func priorityClass(t *testing.T, name string, value int32) {
	t.Helper()
	pc := &schedulingv1.PriorityClass{ObjectMeta: metav1.ObjectMeta{Name: name}, Value: value}
	if err := env.CR.Create(t.Context(), pc); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

func podGroup(t *testing.T, ns, name string, minMember int32, timeoutSeconds int32) {
	t.Helper()
	pg := &schedv1alpha1.PodGroup{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       schedv1alpha1.PodGroupSpec{MinMember: minMember, ScheduleTimeoutSeconds: ptr.To(timeoutSeconds)},
	}
	if err := env.CR.Create(t.Context(), pg); err != nil {
		t.Fatal(err)
	}
}

// member creates a pod of gang (none for a pod outside any gang).
func member(t *testing.T, ns, name, gang string, gpus int64, priorityClassName string) {
	t.Helper()
	limits := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1")}
	if gpus > 0 {
		limits[gpunodes.ResourceGPU] = *resource.NewQuantity(gpus, resource.DecimalSI)
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.PodSpec{
			SchedulerName:     "tessera-scheduler",
			PriorityClassName: priorityClassName,
			Containers: []corev1.Container{{
				Name: "worker", Image: "trainer",
				Resources: corev1.ResourceRequirements{Limits: limits},
			}},
		},
	}
	if gang != "" {
		pod.Labels = map[string]string{schedv1alpha1.PodGroupLabel: gang}
	}
	if _, err := env.Client.CoreV1().Pods(ns).Create(t.Context(), pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// gang creates a PodGroup with one member per entry of gpus (GPUs each),
// named <name>-<i>, all of them needed.
func gang(t *testing.T, ns, name, priorityClassName string, gpus ...int64) {
	t.Helper()
	podGroup(t, ns, name, int32(len(gpus)), 30)
	for i, n := range gpus {
		member(t, ns, fmt.Sprintf("%s-%d", name, i), name, n, priorityClassName)
	}
}

// bound counts the gang's live pods that are bound, and all of them.
func bound(ctx context.Context, ns, gang string) (int, int, error) {
	pods, err := env.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{
		LabelSelector: labels.Set{schedv1alpha1.PodGroupLabel: gang}.String(),
	})
	if err != nil {
		return 0, 0, err
	}
	n, total := 0, 0
	for _, p := range pods.Items {
		if p.DeletionTimestamp != nil {
			continue
		}
		total++
		if p.Spec.NodeName != "" {
			n++
		}
	}
	return n, total, nil
}

func waitGangBound(t *testing.T, ns, gang string, want int) {
	t.Helper()
	framework.Eventually(t, framework.DefaultTimeout, fmt.Sprintf("gang %s to have %d members bound", gang, want), func(ctx context.Context) (bool, error) {
		n, _, err := bound(ctx, ns, gang)
		return n == want, err
	})
}

// eventOn waits for an event on the named object (a PodGroup, a pod) whose
// message contains want.
func eventOn(t *testing.T, ns, name, want string) string {
	t.Helper()
	var msg string
	framework.Eventually(t, framework.DefaultTimeout, fmt.Sprintf("an event on %s saying %q", name, want), func(ctx context.Context) (bool, error) {
		events, err := env.Client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: fields.Set{"involvedObject.name": name}.String()})
		if err != nil {
			return false, err
		}
		for _, e := range events.Items {
			if strings.Contains(e.Message, want) {
				msg = e.Message
				return true, nil
			}
		}
		return false, nil
	})
	return msg
}

func deleteGang(t *testing.T, ns, gang string) {
	t.Helper()
	err := env.Client.CoreV1().Pods(ns).DeleteCollection(t.Context(), metav1.DeleteOptions{}, metav1.ListOptions{
		LabelSelector: labels.Set{schedv1alpha1.PodGroupLabel: gang}.String(),
	})
	if err != nil {
		t.Fatal(err)
	}
	framework.Eventually(t, framework.DefaultTimeout, "gang "+gang+"'s pods to be gone", func(ctx context.Context) (bool, error) {
		_, total, err := bound(ctx, ns, gang)
		return total == 0, err
	})
}

func TestGangLargerThanClusterStaysUnbound(t *testing.T) {
	env.StartScheduler(t)
	ns := env.Namespace(t)
	env.GPUNode(t, "big-0", "dgx-h100", "rack-a")
	env.GPUNode(t, "big-1", "dgx-h100", "rack-a")

	gang(t, ns, "too-big", "", 8, 8, 8)
	msg := eventOn(t, ns, "too-big", "needs 3 more members")
	if !strings.Contains(msg, "24 GPUs in total; only 2 members with 16 GPUs fit now") {
		t.Errorf("event %q does not say what the gang needs and what fits", msg)
	}
	if n, _, err := bound(t.Context(), ns, "too-big"); err != nil || n != 0 {
		t.Errorf("%d members bound (err %v), want none", n, err)
	}
	// The cluster is not held: a gang that fits binds.
	gang(t, ns, "fits", "", 8, 8)
	waitGangBound(t, ns, "fits", 2)
	if n, _, _ := bound(t.Context(), ns, "too-big"); n != 0 {
		t.Errorf("%d members of the oversized gang bound", n)
	}
}

// Three gangs each needing 60% of the GPUs, members created interleaved:
// they complete one after another, and a gang is only ever all or nothing.
func TestInterleavedGangsCompleteOneAfterAnother(t *testing.T) {
	env.StartScheduler(t)
	ns := env.Namespace(t)
	for i := range 5 {
		env.GPUNode(t, fmt.Sprintf("ilv-%d", i), "dgx-h100", "rack-a")
	}
	gangs := []string{"a", "b", "c"}
	for _, g := range gangs {
		podGroup(t, ns, g, 3, 5)
	}
	for i := range 3 {
		for _, g := range gangs {
			member(t, ns, fmt.Sprintf("%s-%d", g, i), g, 8, "")
		}
	}
	done := map[string]bool{}
	for range gangs {
		var running string
		framework.Eventually(t, framework.DefaultTimeout, "one more gang fully bound, the others not at all", func(ctx context.Context) (bool, error) {
			running = ""
			for _, g := range gangs {
				if done[g] {
					continue
				}
				n, _, err := bound(ctx, ns, g)
				if err != nil {
					return false, err
				}
				switch n {
				case 3:
					if running != "" {
						return false, fmt.Errorf("gangs %s and %s both bound on 40 GPUs", running, g)
					}
					running = g
				case 0:
				default:
					return false, nil // binding in flight
				}
			}
			return running != "", nil
		})
		done[running] = true
		deleteGang(t, ns, running) // the gang finishes
	}
}

func TestLateMemberBindsWhenItArrives(t *testing.T) {
	env.StartScheduler(t)
	ns := env.Namespace(t)
	env.GPUNode(t, "late-0", "dgx-h100", "rack-a")

	podGroup(t, ns, "late", 3, 30)
	member(t, ns, "late-0", "late", 2, "")
	member(t, ns, "late-1", "late", 2, "")
	eventOn(t, ns, "late", "2/3 members of gang")
	if n, _, _ := bound(t.Context(), ns, "late"); n != 0 {
		t.Fatalf("%d members bound before the gang is complete", n)
	}
	member(t, ns, "late-2", "late", 2, "")
	waitGangBound(t, ns, "late", 3)
}

// A gang whose members never all arrive holds nothing: another gang that
// needs every GPU still binds.
func TestIncompleteGangHoldsNothing(t *testing.T) {
	env.StartScheduler(t)
	ns := env.Namespace(t)
	env.GPUNode(t, "inc-0", "dgx-h100", "rack-a")

	podGroup(t, ns, "incomplete", 4, 2)
	for i := range 3 {
		member(t, ns, fmt.Sprintf("incomplete-%d", i), "incomplete", 2, "")
	}
	eventOn(t, ns, "incomplete", "3/4 members of gang")
	gang(t, ns, "whole-node", "", 4, 4)
	waitGangBound(t, ns, "whole-node", 2)
	if n, _, _ := bound(t.Context(), ns, "incomplete"); n != 0 {
		t.Errorf("%d members of the incomplete gang bound", n)
	}
}

func TestPreemptionEvictsWholeGangsOnly(t *testing.T) {
	env.StartScheduler(t)
	priorityClass(t, "gang-low", 100)
	priorityClass(t, "gang-high", 1000)
	ns := env.Namespace(t)
	for i := range 3 {
		env.GPUNode(t, fmt.Sprintf("pre-%d", i), "dgx-h100", "rack-a")
	}
	// Low priority: a 2-node gang and a lone half-node pod fill 20 of 24 GPUs.
	gang(t, ns, "low", "gang-low", 8, 8)
	waitGangBound(t, ns, "low", 2)
	member(t, ns, "lone", "", 4, "gang-low")
	env.WaitForPod(t, ns, "lone", "to be bound", func(p *corev1.Pod) bool { return p.Spec.NodeName != "" })
	member(t, ns, "filler", "", 4, "gang-low")
	env.WaitForPod(t, ns, "filler", "to be bound", func(p *corev1.Pod) bool { return p.Spec.NodeName != "" })

	// A high-priority gang of two 8-GPU pods: evicting the lone pods frees
	// one node, not two; only the whole low gang makes room.
	gang(t, ns, "high", "gang-high", 8, 8)
	waitGangBound(t, ns, "high", 2)

	if _, total, _ := bound(t.Context(), ns, "low"); total != 0 {
		t.Errorf("%d members of the victim gang remain: a victim gang must go whole", total)
	}
	for _, name := range []string{"lone", "filler"} {
		if _, err := env.Client.CoreV1().Pods(ns).Get(t.Context(), name, metav1.GetOptions{}); err != nil {
			t.Errorf("pod %s was evicted although the placement did not need it: %v", name, err)
		}
	}
}

// The scheduler stops while gangs are being placed; a new one finishes the
// job.
func TestSchedulerRestartCompletesGangsInFlight(t *testing.T) {
	stop := env.StartScheduler(t)
	ns := env.Namespace(t)
	for i := range 4 {
		env.GPUNode(t, fmt.Sprintf("rst-%d", i), "dgx-h100", "rack-a")
	}
	gangs := []string{"r0", "r1", "r2", "r3", "r4", "r5", "r6", "r7"}
	for _, g := range gangs {
		podGroup(t, ns, g, 4, 10)
		for i := range 4 {
			member(t, ns, fmt.Sprintf("%s-%d", g, i), g, 1, "")
		}
	}
	framework.Eventually(t, framework.DefaultTimeout, "some member to bind", func(ctx context.Context) (bool, error) {
		n, _, err := bound(ctx, ns, "r0")
		return n > 0, err
	})
	stop()
	env.StartScheduler(t)
	for _, g := range gangs {
		waitGangBound(t, ns, g, 4)
	}
}

// A scheduler died in the middle of a gang's binding burst: one member is
// bound, the other still pending, and the room it was planned on is gone.
// The new scheduler cannot complete the gang, so within the gang's timeout
// it evicts the bound member rather than leave it holding a node.
func TestSchedulerRestartLeavesNoPartialGang(t *testing.T) {
	ns := env.Namespace(t)
	env.GPUNode(t, "half-0", "dgx-h100", "rack-a")
	env.GPUNode(t, "half-1", "dgx-h100", "rack-a")
	podGroup(t, ns, "half", 2, 5)
	bindDirectly(t, ns, "half-bound", "half", "half-0")
	member(t, ns, "half-pending", "half", 8, "")
	bindDirectly(t, ns, "elsewhere", "", "half-1")

	env.StartScheduler(t)
	framework.Eventually(t, framework.DefaultTimeout, "the partly bound gang's bound member to be evicted", func(ctx context.Context) (bool, error) {
		p, err := env.Client.CoreV1().Pods(ns).Get(ctx, "half-bound", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		return err == nil && p.DeletionTimestamp != nil, err
	})
	if msg := eventOn(t, ns, "half", "evicting the bound members"); !strings.Contains(msg, "1 of its 2 members bound for longer than its 5s timeout") {
		t.Errorf("event %q does not say why", msg)
	}
	if _, err := env.Client.CoreV1().Pods(ns).Get(t.Context(), "elsewhere", metav1.GetOptions{}); err != nil {
		t.Errorf("the pod outside the gang was touched: %v", err)
	}
}

// bindDirectly creates an 8-GPU pod already bound to node, as if a scheduler
// that has since died had bound it.
func bindDirectly(t *testing.T, ns, name, gang, node string) {
	t.Helper()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.PodSpec{SchedulerName: "tessera-scheduler", NodeName: node, Containers: []corev1.Container{{
			Name: "worker", Image: "trainer",
			Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{gpunodes.ResourceGPU: resource.MustParse("8")}},
		}}},
	}
	if gang != "" {
		pod.Labels = map[string]string{schedv1alpha1.PodGroupLabel: gang}
	}
	if _, err := env.Client.CoreV1().Pods(ns).Create(t.Context(), pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func TestInvalidArgsFailStartUp(t *testing.T) {
	stop, err := env.StartSchedulerWithConfig(t, func(config string) string {
		return strings.Replace(config, "defaultScheduleTimeoutSeconds: 60", "defaultScheduleTimeoutSeconds: 0", 1)
	})
	if err == nil {
		stop()
		t.Fatal("scheduler started with defaultScheduleTimeoutSeconds: 0")
	}
	if !strings.Contains(err.Error(), "args.defaultScheduleTimeoutSeconds: Invalid value: 0: must be between 1 and 3600") {
		t.Errorf("start-up error %q does not name the field and the rule", err)
	}
}

// A 0-GPU coordinator and 8-GPU workers form one gang.
func TestGangOfMixedShapes(t *testing.T) {
	env.StartScheduler(t)
	ns := env.Namespace(t)
	env.GPUNode(t, "mix-0", "dgx-h100", "rack-a")
	env.GPUNode(t, "mix-1", "dgx-h100", "rack-a")

	podGroup(t, ns, "mixed", 3, 30)
	member(t, ns, "mixed-coordinator", "mixed", 0, "")
	member(t, ns, "mixed-worker-0", "mixed", 8, "")
	member(t, ns, "mixed-worker-1", "mixed", 8, "")
	waitGangBound(t, ns, "mixed", 3)
	w0, err := env.Client.CoreV1().Pods(ns).Get(t.Context(), "mixed-worker-0", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w1, err := env.Client.CoreV1().Pods(ns).Get(t.Context(), "mixed-worker-1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if w0.Spec.NodeName == w1.Spec.NodeName {
		t.Errorf("both 8-GPU workers on %s", w0.Spec.NodeName)
	}
}
