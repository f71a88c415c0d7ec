// Package fragmentation_test checks GPU-fragmentation-aware placement on a
// real apiserver with kwok-simulated GPU nodes: shares of one GPU and whole
// GPUs, accounted together, placed so that a whole node stays free for a
// pod that needs it.
package fragmentation_test

import (
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	tesserav1alpha1 "tessera.dev/tessera/apis/tessera/v1alpha1"
	"tessera.dev/tessera/internal/gpunodes"
	"tessera.dev/tessera/test/integration/framework"
)

var env *framework.Env

func TestMain(m *testing.M) {
	os.Exit(framework.Main(m, framework.Options{}, &env))
}

// pod asks tessera-scheduler for cpu, and for whole GPUs or a share
// (milli > 0) of one.
func pod(ns, name, cpu string, gpus int64, milli int) *corev1.Pod {
	requests := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu)}
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.PodSpec{SchedulerName: "tessera-scheduler", Containers: []corev1.Container{{
			Name: "main", Image: "trainer", Resources: corev1.ResourceRequirements{Requests: requests}}}},
	}
	if gpus > 0 {
		q := *resource.NewQuantity(gpus, resource.DecimalSI)
		requests[gpunodes.ResourceGPU] = q
		p.Spec.Containers[0].Resources.Limits = corev1.ResourceList{gpunodes.ResourceGPU: q}
	}
	if milli > 0 {
		p.Annotations = map[string]string{tesserav1alpha1.AnnotationGPUMilli: strconv.Itoa(milli)}
	}
	return p
}

func create(t *testing.T, p *corev1.Pod) {
	t.Helper()
	if _, err := env.Client.CoreV1().Pods(p.Namespace).Create(t.Context(), p, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// placement waits until the pod is bound with its GPUs recorded.
func placement(t *testing.T, ns, name string) (string, []int) {
	t.Helper()
	p := env.WaitForPod(t, ns, name, "to be bound with tessera.dev/gpu-ids", func(p *corev1.Pod) bool {
		return p.Spec.NodeName != "" && p.Annotations[tesserav1alpha1.AnnotationGPUIDs] != ""
	})
	ids, err := tesserav1alpha1.ParseGPUIDs(p.Annotations[tesserav1alpha1.AnnotationGPUIDs])
	if err != nil {
		t.Fatal(err)
	}
	return p.Spec.NodeName, ids
}

// node is what BestFit sees of a node: free CPU and GPU, in milli.
type node struct {
	name                       string
	cpu, gpu, freeCPU, freeGPU int64
}

// bestFit is the FGD paper's BestFit baseline: the node left with the least
// free CPU and GPU, each as a share of the node's capacity.
func bestFit(nodes []*node, cpu, gpu int64) *node {
	var best *node
	var bestLeft float64
	for _, n := range nodes {
		if n.freeCPU < cpu || n.freeGPU < gpu {
			continue
		}
		left := float64(n.freeCPU-cpu)/float64(n.cpu) + float64(n.freeGPU-gpu)/float64(n.gpu)
		if best == nil || left < bestLeft {
			best, bestLeft = n, left
		}
	}
	return best
}

// The workload is 4-GPU jobs and half-GPU shares. Node "a" runs a 1-GPU
// pod; node "b" has all four GPUs free but most of its CPU taken by a
// CPU-only pod. Two shares of 500 and a 1-GPU pod arrive, then a 4-GPU job.
// BestFit packs the three onto "b", the node with the least left over,
// breaking its GPUs, and the 4-GPU job finds no node. Tessera puts both
// shares on one GPU of "a" and the 1-GPU pod beside them, so "b" stays
// whole and the job runs there.
func TestSharesAndWholeGPUsLeaveAWholeNodeFree(t *testing.T) {
	const workload = `      workload:
      - {cpuMilli: 2000, gpus: 4, weight: 1}
      - {cpuMilli: 1000, gpus: 1, gpuMilli: 500, weight: 1}
`
	ns := env.Namespace(t)
	for _, name := range []string{"frag-a", "frag-b"} {
		env.GPUNode(t, name, "l4-pcie", "rack-a") // 4 GPUs, 64 CPUs
		env.PublishTopology(t, name, "l4-pcie")
	}
	busy := pod(ns, "gpu-busy", "1", 1, 0)
	busy.Spec.NodeName = "frag-a"
	busy.Annotations = map[string]string{tesserav1alpha1.AnnotationGPUIDs: "0"}
	create(t, busy)
	cpuBusy := pod(ns, "cpu-busy", "56", 0, 0)
	cpuBusy.Spec.NodeName = "frag-b"
	create(t, cpuBusy)

	// Started after the setup, so that its caches hold all of it.
	stop, err := env.StartSchedulerWithConfig(t, func(config string) string {
		// The first GPUFragmentation args are tessera-scheduler's.
		return strings.Replace(config, "      measure: Both\n", "      measure: Both\n"+workload, 1)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	bf := []*node{
		{name: "frag-a", cpu: 64000, gpu: 4000, freeCPU: 63000, freeGPU: 3000},
		{name: "frag-b", cpu: 64000, gpu: 4000, freeCPU: 8000, freeGPU: 4000},
	}
	steps := []struct {
		name      string
		gpus      int64
		milli     int
		wantGPUs  []int
		gpuDemand int64
	}{
		{name: "share-1", milli: 500, wantGPUs: []int{1}, gpuDemand: 500},
		{name: "share-2", milli: 500, wantGPUs: []int{1}, gpuDemand: 500}, // completes GPU 1
		{name: "whole", gpus: 1, wantGPUs: []int{2}, gpuDemand: 1000},
	}
	for _, s := range steps {
		create(t, pod(ns, s.name, "1", s.gpus, s.milli))
		nodeName, ids := placement(t, ns, s.name)
		if nodeName != "frag-a" || !slices.Equal(ids, s.wantGPUs) {
			t.Errorf("%s went to %s GPUs %v, want frag-a GPUs %v", s.name, nodeName, ids, s.wantGPUs)
		}
		if n := bestFit(bf, 1000, s.gpuDemand); n == nil || n.name != "frag-b" {
			t.Fatalf("BestFit would have put %s on %v, not frag-b: the scenario no longer shows the difference", s.name, n)
		} else {
			n.freeCPU -= 1000
			n.freeGPU -= s.gpuDemand
		}
	}
	// BestFit left frag-b with 2 GPUs, frag-a with 3 (2 whole): no node
	// for 4 GPUs. Tessera kept frag-b whole.
	if n := bestFit(bf, 2000, 4000); n != nil {
		t.Fatalf("after BestFit's placements a 4-GPU job would still fit on %s", n.name)
	}
	create(t, pod(ns, "job", "2", 4, 0))
	if nodeName, ids := placement(t, ns, "job"); nodeName != "frag-b" || !slices.Equal(ids, []int{0, 1, 2, 3}) {
		t.Errorf("the 4-GPU job went to %s GPUs %v, want frag-b GPUs 0-3", nodeName, ids)
	}
}
