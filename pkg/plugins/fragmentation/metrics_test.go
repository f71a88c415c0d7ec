package fragmentation

import (
	"testing"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
)

func listers(t *testing.T, objs ...any) (corelisters.NodeLister, corelisters.PodLister) {
	t.Helper()
	nodes := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	pods := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	for _, o := range objs {
		store := pods
		if _, ok := o.(*v1.Node); ok {
			store = nodes
		}
		if err := store.Add(o); err != nil {
			t.Fatal(err)
		}
	}
	return corelisters.NewNodeLister(nodes), corelisters.NewPodLister(pods)
}

func gpuNode(name, pool, product string, gpus int64) *v1.Node {
	return &v1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{PoolLabel: pool, ProductLabel: product}},
		Status: v1.NodeStatus{Allocatable: v1.ResourceList{
			v1.ResourceCPU: resource.MustParse("64"), "nvidia.com/gpu": *resource.NewQuantity(gpus, resource.DecimalSI),
			v1.ResourcePods: resource.MustParse("110"),
		}},
	}
}

func boundPod(name, node string, gpus int64, phase v1.PodPhase) *v1.Pod {
	p := pod(name, "1", gpus, "")
	p.Namespace = "default"
	p.Spec.NodeName = node
	p.Status.Phase = phase
	return p
}

// The totals by pool and product: per GPU where the accountant knows the
// node (a share counted by its fraction), by nvidia.com/gpu count where it
// does not; nodes without GPUs and finished pods count for nothing; the
// fragmented capacity is the mix's (one 2-GPU shape): a node with one
// whole GPU free strands all its free capacity.
func TestGPUTotalsByPoolAndProduct(t *testing.T) {
	pl := newPlugin(t, `{"workload": [{"cpuMilli": 1000, "gpus": 2, "weight": 1}]}`, accountant{"known": {1000, 500, 0, 0}})
	nodes, pods := listers(t,
		gpuNode("known", "training", "H100", 4),
		gpuNode("counted", "training", "H100", 8),
		gpuNode("cpu-only", "training", "", 0),
		gpuNode("l40s", "", "L40S", 2),
		boundPod("two", "counted", 2, v1.PodRunning),
		boundPod("done", "counted", 4, v1.PodSucceeded),
		boundPod("one", "l40s", 1, v1.PodRunning),
	)
	totals, err := pl.gpuTotals(nodes, pods)
	if err != nil {
		t.Fatal(err)
	}
	want := map[poolProduct]gpuTotals{
		{"training", "H100"}: {allocated: 2.5 + 2, free: 1.5 + 6, fragmented: 1.5},
		{"", "L40S"}:         {allocated: 1, free: 1, fragmented: 1},
	}
	if len(totals) != len(want) {
		t.Errorf("totals for %d pools and products, want %d: %v", len(totals), len(want), totals)
	}
	for k, w := range want {
		if got := totals[k]; got == nil || *got != w {
			t.Errorf("%v: got %+v, want %+v", k, got, w)
		}
	}
}
