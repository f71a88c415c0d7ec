package simkit

import (
	"fmt"
	"slices"
	"testing"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
)

// kube-scheduler's numFeasibleNodesToFind (schedule_one.go), case by case.
func TestNumFeasibleNodesToFind(t *testing.T) {
	for _, c := range []struct {
		name       string
		percentage *int32
		nodes      int
		want       int
	}{
		{"fewer than 100 nodes: all", nil, 99, 99},
		{"adaptive on 100 nodes: at least 100", nil, 100, 100},
		{"adaptive on 1,213 nodes: 41 %", nil, 1213, 497},
		{"adaptive on 5,000 nodes: 10 %", nil, 5000, 500},
		{"adaptive on 20,000 nodes: at least 5 %", nil, 20000, 1000},
		{"0 is adaptive", ptr.To[int32](0), 5000, 500},
		{"set: 5 % of 5,000", ptr.To[int32](5), 5000, 250},
		{"set: never under 100", ptr.To[int32](1), 5000, 100},
		{"set: 100 % is all", ptr.To[int32](100), 1213, 1213},
	} {
		if got := NumFeasibleNodesToFind(c.percentage, c.nodes); got != c.want {
			t.Errorf("%s: %d, want %d", c.name, got, c.want)
		}
	}
}

// testProfile is the default profile but for PodTopologySpread's system
// default constraints, which make pods unsignable (no batching).
const testProfile = `apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
profiles:
- schedulerName: default-scheduler
  pluginConfig:
  - name: PodTopologySpread
    args: {defaultingType: List}
`

// simulator returns a simulator of testProfile over nodes of cpus CPUs
// each, with room for pods pods each.
func simulator(t *testing.T, o Options, cpus []int64, pods int) *Simulator {
	t.Helper()
	if err := Setup(); err != nil {
		t.Fatal(err)
	}
	profile, err := Profile([]byte(testProfile), "default-scheduler")
	if err != nil {
		t.Fatal(err)
	}
	reg, err := NewRegistry(nil)
	if err != nil {
		t.Fatal(err)
	}
	nodes := make([]*v1.Node, len(cpus))
	for i, cpu := range cpus {
		nodes[i] = &v1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("n%03d", i), Labels: map[string]string{v1.LabelHostname: fmt.Sprintf("n%03d", i)}},
			Status: v1.NodeStatus{Allocatable: v1.ResourceList{
				v1.ResourceCPU:  *resource.NewQuantity(cpu, resource.DecimalSI),
				v1.ResourcePods: *resource.NewQuantity(int64(pods), resource.DecimalSI),
			}},
		}
	}
	s, err := New(t.Context(), reg.Registry, profile, nodes, o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// cpus is n nodes of c CPUs each.
func cpus(n int, c int64) []int64 {
	out := make([]int64, n)
	for i := range out {
		out[i] = c
	}
	return out
}

func testPod(i int) *v1.Pod {
	return &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: fmt.Sprintf("p%d", i), UID: types.UID(fmt.Sprint(i))},
		Spec: v1.PodSpec{Containers: []v1.Container{{Name: "c", Image: "i", Resources: v1.ResourceRequirements{
			Requests: v1.ResourceList{v1.ResourceCPU: resource.MustParse("1")}}}}},
	}
}

// As kube-scheduler, a search stops once percentageOfNodesToScore of the
// nodes are feasible, and the next pod's search starts where it stopped:
// on nodes that all score alike, each pod takes the first node its search
// found (kube-scheduler 1.36's heap breaks no tie at random).
func TestSearchStopsAtEnoughFeasibleNodesAndRotates(t *testing.T) {
	s := simulator(t, Options{Seed: 1}, cpus(300, 8), 10)
	want := NumFeasibleNodesToFind(nil, 300) // 144
	var got []string
	for i := range 2 {
		node, err := s.Schedule(t.Context(), testPod(i))
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, node)
		if got := s.Filtered; got != int64(want*(i+1)) {
			t.Errorf("after pod %d: %d nodes filtered, want %d", i, got, want*(i+1))
		}
	}
	if w := []string{"n000", fmt.Sprintf("n%03d", want)}; !slices.Equal(got, w) {
		t.Errorf("pods placed on %v, want %v", got, w)
	}
	if got := s.next; got != 2*want%300 {
		t.Errorf("the next search starts at node %d, want %d", got, 2*want%300)
	}
	if got := s.Scored; got != int64(2*want) {
		t.Errorf("%d nodes scored, want %d", got, 2*want)
	}
}

// A pod that signs as the last one did, after the last pod filled its node,
// is placed on the last ranking's next node without a search. The nodes
// rank by their free CPU (LeastAllocated): n000 (64 CPUs), n001 (32),
// n002 (16), then the rest (2); each takes one pod.
func TestBatchingPlacesOnTheLastRanking(t *testing.T) {
	s := simulator(t, Options{Seed: 1, Batch: true}, append([]int64{64, 32, 16}, cpus(147, 2)...), 1)
	pods := []*v1.Pod{testPod(0), testPod(1), testPod(2)}
	got := enqueueAndSchedule(t, s, pods)
	if want := []string{"n000", "n001", "n002"}; !slices.Equal(got, want) {
		t.Errorf("pods placed on %v, want %v", got, want)
	}
	if s.Batched != 2 {
		t.Errorf("%d pods placed on a hint, want 2", s.Batched)
	}
	if want := int64(NumFeasibleNodesToFind(nil, 150) + 2); s.Filtered != want {
		t.Errorf("%d nodes filtered, want %d (one search, then the hints)", s.Filtered, want)
	}
}

// On nodes that all score alike, kube-scheduler 1.36's heap gives the
// first pod the first node found and keeps the last one on top: the next
// alike pod's hint.
func TestBatchingHintOnTiesIsTheHeapsNext(t *testing.T) {
	s := simulator(t, Options{Seed: 1, Batch: true}, cpus(150, 8), 1)
	pods := []*v1.Pod{testPod(0), testPod(1)}
	got := enqueueAndSchedule(t, s, pods)
	if want := []string{"n000", "n099"}; !slices.Equal(got, want) || s.Batched != 1 {
		t.Errorf("pods placed on %v with %d on a hint, want %v with 1", got, s.Batched, want)
	}
}

// enqueueAndSchedule queues the pods, then schedules them in order, and
// returns the node each went to.
func enqueueAndSchedule(t *testing.T, s *Simulator, pods []*v1.Pod) []string {
	t.Helper()
	s.Enqueue(t.Context(), pods)
	var got []string
	for _, p := range pods {
		node, err := s.Schedule(t.Context(), p)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, node)
	}
	return got
}
