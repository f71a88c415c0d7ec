// Package workloads_test runs the workload APIs teams already use (Job,
// Deployment, JobSet, LeaderWorkerSet, PyTorchJob, TrainJob) through Tessera's
// scheduler and Kueue, with their real controllers (kube-controller-manager,
// the JobSet and LWS controllers and Kubeflow's training-operator and Trainer built from
// their modules, webhooks registered) and garbage collection.
package workloads_test

import (
	"context"
	"os"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	schedv1alpha1 "sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1"

	"tessera.dev/tessera/internal/gpunodes"
	"tessera.dev/tessera/test/integration/framework"
)

var env *framework.Env

func TestMain(m *testing.M) {
	os.Exit(framework.Main(m, framework.Options{Scheduler: true, ControllerManager: true, JobSet: true, LeaderWorkerSet: true, TrainingOperator: true, Trainer: true, Kueue: true}, &env))
}

func gpuTemplate(app string, gpus int64) corev1.PodTemplateSpec {
	gpu := *resource.NewQuantity(gpus, resource.DecimalSI)
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": app}},
		Spec: corev1.PodSpec{
			SchedulerName: "tessera-scheduler",
			RestartPolicy: corev1.RestartPolicyNever,
			Containers: []corev1.Container{{
				Name:  "main",
				Image: "nvcr.io/nvidia/pytorch:25.01-py3",
				Resources: corev1.ResourceRequirements{
					Requests: corev1.ResourceList{gpunodes.ResourceGPU: gpu},
					Limits:   corev1.ResourceList{gpunodes.ResourceGPU: gpu},
				},
			}},
		},
	}
}

func podsOf(t *testing.T, ns, app string) []corev1.Pod {
	t.Helper()
	list, err := env.Client.CoreV1().Pods(ns).List(t.Context(), metav1.ListOptions{LabelSelector: labels.Set{"app": app}.String()})
	if err != nil {
		t.Fatal(err)
	}
	return list.Items
}

// A Deployment of 1-GPU pods goes through Tessera as it is: the
// Deployment and ReplicaSet controllers make the pods, no gang is formed,
// and the profile packs them onto one node.
func TestDeploymentOfOneGPUPodsIsPacked(t *testing.T) {
	ns := env.Namespace(t)
	env.GPUNode(t, "deploy-h100-0", "dgx-h100", "rack-a")
	env.GPUNode(t, "deploy-h100-1", "dgx-h100", "rack-a")
	tmpl := gpuTemplate("infer", 1)
	tmpl.Spec.RestartPolicy = corev1.RestartPolicyAlways
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "infer"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](4),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "infer"}},
			Template: tmpl,
		},
	}
	if _, err := env.Client.AppsV1().Deployments(ns).Create(t.Context(), d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	framework.Eventually(t, framework.DefaultTimeout, "4 Deployment pods Running", func(ctx context.Context) (bool, error) {
		running := 0
		for _, p := range podsOf(t, ns, "infer") {
			if p.Status.Phase == corev1.PodRunning {
				running++
			}
		}
		return running == 4, nil
	})
	nodes := map[string]int{}
	for _, p := range podsOf(t, ns, "infer") {
		nodes[p.Spec.NodeName]++
		if _, gang := p.Labels[schedv1alpha1.PodGroupLabel]; gang {
			t.Errorf("pod %s is in a gang (%s)", p.Name, p.Labels[schedv1alpha1.PodGroupLabel])
		}
	}
	if len(nodes) != 1 {
		t.Errorf("pods on %v, want all four packed on one node", nodes)
	}
	pgs := &schedv1alpha1.PodGroupList{}
	if err := env.CR.List(t.Context(), pgs); err != nil {
		t.Fatal(err)
	}
	for _, pg := range pgs.Items {
		if pg.Namespace == ns {
			t.Errorf("PodGroup %s made for a Deployment", pg.Name)
		}
	}
}

// An Indexed Job with only schedulerName set is placed whole: the real Job
// controller makes its pods, Tessera infers their gang from the Job
// (PodGroup named after it, owned by it, minMember its parallelism), and
// while one member cannot fit none binds; once room comes, all bind.
// Deleting the Job removes its pods and the inferred PodGroup (garbage
// collection).
func TestIndexedJobIsGangScheduledAndCollected(t *testing.T) {
	ns := env.Namespace(t)
	env.GPUNode(t, "job-h100-0", "dgx-h100", "rack-a")
	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "train"},
		Spec: batchv1.JobSpec{
			Parallelism:    ptr.To[int32](3),
			Completions:    ptr.To[int32](3),
			CompletionMode: ptr.To(batchv1.IndexedCompletion),
			// kwok runs each pod, then completes it (the Job succeeds).
			Template: gpuTemplate("train", 4),
		},
	}
	job, err := env.Client.BatchV1().Jobs(ns).Create(t.Context(), job, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Three 4-GPU members, one 8-GPU node: two would fit, the gang does not.
	framework.Eventually(t, framework.DefaultTimeout, "the Job's 3 pods labelled into its gang and refused whole", func(ctx context.Context) (bool, error) {
		pods := podsOf(t, ns, "train")
		refused := 0
		for _, p := range pods {
			if p.Spec.NodeName != "" {
				t.Fatalf("pod %s bound to %s while its gang cannot fit", p.Name, p.Spec.NodeName)
			}
			if p.Labels[schedv1alpha1.PodGroupLabel] != "train" {
				continue
			}
			for _, c := range p.Status.Conditions {
				if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse {
					refused++
				}
			}
		}
		return len(pods) == 3 && refused == 3, nil
	})
	pg := &schedv1alpha1.PodGroup{}
	if err := env.CR.Get(t.Context(), types.NamespacedName{Namespace: ns, Name: "train"}, pg); err != nil {
		t.Fatalf("the inferred PodGroup: %v", err)
	}
	if owner := metav1.GetControllerOf(pg); pg.Spec.MinMember != 3 || owner == nil || owner.UID != job.UID {
		t.Errorf("PodGroup minMember %d, controller %+v; want 3, the Job", pg.Spec.MinMember, owner)
	}
	env.GPUNode(t, "job-h100-1", "dgx-h100", "rack-a")
	framework.Eventually(t, framework.DefaultTimeout, "all 3 pods bound, the Job complete", func(ctx context.Context) (bool, error) {
		bound := 0
		for _, p := range podsOf(t, ns, "train") {
			if p.Spec.NodeName != "" {
				bound++
			}
		}
		j, err := env.Client.BatchV1().Jobs(ns).Get(ctx, job.Name, metav1.GetOptions{})
		return bound == 3 && err == nil && j.Status.Succeeded == 3, err
	})

	if err := env.Client.BatchV1().Jobs(ns).Delete(t.Context(), job.Name, metav1.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationForeground)}); err != nil {
		t.Fatal(err)
	}
	framework.Eventually(t, framework.DefaultTimeout, "the Job's pods and PodGroup garbage collected", func(ctx context.Context) (bool, error) {
		err := env.CR.Get(ctx, types.NamespacedName{Namespace: ns, Name: "train"}, &schedv1alpha1.PodGroup{})
		if err != nil && !apierrors.IsNotFound(err) {
			return false, err
		}
		return apierrors.IsNotFound(err) && len(podsOf(t, ns, "train")) == 0, nil
	})
}
