// Package scheduler_test checks Tessera's scheduler on a real apiserver with
// kwok-simulated GPU nodes.
package scheduler_test

import (
	"context"
	"os"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"

	"tessera.dev/tessera/internal/gpunodes"
	"tessera.dev/tessera/test/integration/framework"
)

var env *framework.Env

func TestMain(m *testing.M) {
	os.Exit(framework.Main(m, framework.Options{Scheduler: true}, &env))
}

func gpuPod(namespace, name string, gpus int64) *corev1.Pod {
	gpu := *resource.NewQuantity(gpus, resource.DecimalSI)
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec: corev1.PodSpec{
			SchedulerName: "tessera-scheduler",
			Containers: []corev1.Container{{
				Name:  "train",
				Image: "nvcr.io/nvidia/pytorch:25.01-py3",
				Resources: corev1.ResourceRequirements{
					Requests: corev1.ResourceList{gpunodes.ResourceGPU: gpu},
					Limits:   corev1.ResourceList{gpunodes.ResourceGPU: gpu},
				},
			}},
		},
	}
}

func TestFourGPUPodIsBoundAndRuns(t *testing.T) {
	ns := env.Namespace(t)
	env.GPUNode(t, "bind-h100-0", "dgx-h100", "rack-a")

	if _, err := env.Client.CoreV1().Pods(ns).Create(t.Context(), gpuPod(ns, "four-gpus", 4), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod := env.WaitForPod(t, ns, "four-gpus", "to be Running", func(p *corev1.Pod) bool {
		return p.Status.Phase == corev1.PodRunning
	})
	if pod.Spec.NodeName != "bind-h100-0" {
		t.Errorf("pod bound to %q, want bind-h100-0", pod.Spec.NodeName)
	}
}

func TestNineGPUPodStaysPendingWithReason(t *testing.T) {
	ns := env.Namespace(t)
	env.GPUNode(t, "pending-h100-0", "dgx-h100", "rack-a")

	if _, err := env.Client.CoreV1().Pods(ns).Create(t.Context(), gpuPod(ns, "nine-gpus", 9), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var message string
	framework.Eventually(t, framework.DefaultTimeout, "a FailedScheduling event for nine-gpus", func(ctx context.Context) (bool, error) {
		events, err := env.Client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{
			FieldSelector: fields.Set{"involvedObject.name": "nine-gpus", "reason": "FailedScheduling"}.String(),
		})
		if err != nil || len(events.Items) == 0 {
			return false, err
		}
		message = events.Items[0].Message
		return true, nil
	})
	if !strings.Contains(message, "Insufficient nvidia.com/gpu") {
		t.Errorf("FailedScheduling message %q does not name the missing GPUs", message)
	}
	// The event and the pod's condition are separate writes.
	pod := env.WaitForPod(t, ns, "nine-gpus", "to be marked Unschedulable", func(p *corev1.Pod) bool {
		return hasCondition(p, corev1.PodScheduled, corev1.ConditionFalse, corev1.PodReasonUnschedulable)
	})
	if pod.Spec.NodeName != "" || pod.Status.Phase != corev1.PodPending {
		t.Errorf("pod is on node %q in phase %s, want unbound and Pending", pod.Spec.NodeName, pod.Status.Phase)
	}
}

func hasCondition(pod *corev1.Pod, typ corev1.PodConditionType, status corev1.ConditionStatus, reason string) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == typ {
			return c.Status == status && c.Reason == reason
		}
	}
	return false
}
