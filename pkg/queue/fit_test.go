package queue

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"

	"tessera.dev/tessera/internal/gpunodes"
	"tessera.dev/tessera/pkg/topology"
	"tessera.dev/tessera/pkg/topology/published"
)

// node builds a free node of a shape from the GPUNodeTopology its agent
// would publish, with the given NVML indexes already taken.
func node(t *testing.T, name, shape, rack string, taken ...int) *Node {
	t.Helper()
	status, err := gpunodes.TopologyStatus(name, shape)
	if err != nil {
		t.Fatal(err)
	}
	gpus, err := published.Read(&status, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	used := topology.NewUsage(len(gpus.Topo.GPUs))
	used.Take(gpus.Positions(taken), topology.MilliGPU)
	return &Node{Name: name, Labels: map[string]string{"rack": rack}, GPUs: gpus, Used: used, FreeMilliCPU: 100_000, FreeMemoryBytes: 1 << 40}
}

// counted builds a free node without a trusted topology, with free GPUs by
// count; countOnly says whether GPU pods may go there by count alone.
func counted(name, rack string, free int, countOnly bool) *Node {
	return &Node{Name: name, Labels: map[string]string{"rack": rack}, CountOnly: countOnly, CountedGPUs: free, FreeMilliCPU: 100_000, FreeMemoryBytes: 1 << 40}
}

// tainted taints the node pool=training:NoSchedule.
func tainted(n *Node) *Node {
	n.Taints = []corev1.Taint{{Key: "pool", Value: "training", Effect: corev1.TaintEffectNoSchedule}}
	return n
}

func workers(n, gpus int) []Demand {
	out := make([]Demand, n)
	for i := range out {
		out[i] = Demand{Role: "workers", GPUs: gpus}
	}
	return out
}

func TestPlace(t *testing.T) {
	cases := []struct {
		name      string
		nodes     func(t *testing.T) []*Node
		demands   []Demand
		want      Placement
		wantFits  bool
		wantInMsg string
		notInMsg  string
	}{
		{
			name: "one rack preferred over a split",
			nodes: func(t *testing.T) []*Node {
				return []*Node{node(t, "a0", "dgx-h100", "a"), node(t, "b0", "dgx-h100", "b"), node(t, "b1", "dgx-h100", "b")}
			},
			demands: workers(2, 8), want: Placement{"b0", "b1"}, wantFits: true, wantInMsg: "(rack b)",
		},
		{
			name: "across racks when no rack holds the gang",
			nodes: func(t *testing.T) []*Node {
				return []*Node{node(t, "a0", "dgx-h100", "a"), node(t, "b0", "dgx-h100", "b")}
			},
			demands: workers(2, 8), want: Placement{"a0", "b0"}, wantFits: true, wantInMsg: "across racks",
		},
		{
			name: "tightest node first",
			nodes: func(t *testing.T) []*Node {
				return []*Node{node(t, "idle", "dgx-h100", "a"), node(t, "busy", "dgx-h100", "a", 0, 1, 2, 3)}
			},
			demands: workers(1, 4), want: Placement{"busy"}, wantFits: true,
		},
		{
			name: "scattered free GPUs do not fit a gang",
			nodes: func(t *testing.T) []*Node {
				return []*Node{node(t, "a0", "dgx-h100", "a", 0, 1), node(t, "a1", "dgx-h100", "a")}
			},
			demands: workers(2, 8), wantInMsg: "needs 2 × 8 GPUs (workers); 1 of 2 pods fit the free GPUs now",
		},
		{
			name: "an NVLink pair must be whole",
			nodes: func(t *testing.T) []*Node {
				return []*Node{node(t, "nvl", "h100-nvl-pairs", "a", 0, 2, 4, 6)}
			},
			demands:   []Demand{{Role: "leader", GPUs: 2, IslandOnly: true}},
			wantInMsg: "in one NVLink island",
		},
		{
			name: "node labels of the flavor",
			nodes: func(t *testing.T) []*Node {
				return []*Node{node(t, "a0", "dgx-h100", "a"), node(t, "b0", "dgx-h100", "b")}
			},
			demands: []Demand{{Role: "workers", GPUs: 8, NodeLabels: map[string]string{"rack": "b"}}}, want: Placement{"b0"}, wantFits: true,
		},
		{
			name: "the best rack named is one the flavor allows",
			nodes: func(t *testing.T) []*Node {
				a0 := node(t, "a0", "dgx-h100", "a")
				a0.Labels["pool"] = "training"
				return []*Node{a0, node(t, "b0", "dgx-h100", "b"), node(t, "b1", "dgx-h100", "b")}
			},
			demands:   []Demand{{Role: "workers", GPUs: 8, NodeLabels: map[string]string{"pool": "training"}}, {Role: "workers", GPUs: 8, NodeLabels: map[string]string{"pool": "training"}}},
			wantInMsg: "needs 2 × 8 GPUs (workers); 1 of 2 pods fit the free GPUs now",
			notInMsg:  "rack b",
		},
		{
			name: "a taint the pod does not tolerate",
			nodes: func(t *testing.T) []*Node {
				return []*Node{tainted(node(t, "a0", "dgx-h100", "a")), node(t, "b0", "dgx-h100", "b")}
			},
			demands: workers(1, 8), want: Placement{"b0"}, wantFits: true,
		},
		{
			name: "a taint the flavor tolerates",
			nodes: func(t *testing.T) []*Node {
				return []*Node{tainted(node(t, "a0", "dgx-h100", "a"))}
			},
			demands: []Demand{{Role: "workers", GPUs: 8, Tolerations: []corev1.Toleration{{Key: "pool", Operator: corev1.TolerationOpEqual, Value: "training", Effect: corev1.TaintEffectNoSchedule}}}},
			want:    Placement{"a0"}, wantFits: true,
		},
		{
			name: "no node with the flavor's labels",
			nodes: func(t *testing.T) []*Node {
				return []*Node{node(t, "a0", "dgx-h100", "a")}
			},
			demands:   []Demand{{Role: "workers", GPUs: 8, NodeLabels: map[string]string{"pool": "training"}}},
			wantInMsg: "no ready node has the labels pool=training",
		},
		{
			name: "a count-only node takes a plain GPU pod",
			nodes: func(*testing.T) []*Node {
				return []*Node{counted("c0", "a", 8, true)}
			},
			demands: workers(1, 8), want: Placement{"c0"}, wantFits: true,
		},
		{
			name: "a count-only node takes no more GPUs than it counts",
			nodes: func(*testing.T) []*Node {
				return []*Node{counted("c0", "a", 4, true)}
			},
			demands: workers(1, 8), wantInMsg: "0 of 1 pods fit", notInMsg: "no fresh GPU topology",
		},
		{
			name: "a count-only node takes no NVLink-island pod",
			nodes: func(*testing.T) []*Node {
				return []*Node{counted("c0", "a", 8, true)}
			},
			demands:   []Demand{{Role: "leader", GPUs: 2, IslandOnly: true}},
			wantInMsg: "1 node(s) with free GPUs have no fresh GPU topology, so they take no pod that needs an NVLink island or a GPU model",
		},
		{
			name: "a count-only node takes no pod that names GPU models",
			nodes: func(*testing.T) []*Node {
				return []*Node{counted("c0", "a", 8, true)}
			},
			demands:   []Demand{{Role: "workers", GPUs: 1, Models: "NVIDIA H100 80GB HBM3"}},
			wantInMsg: "have no fresh GPU topology",
		},
		{
			name: "missingTopology Unschedulable keeps GPU pods off a node without topology",
			nodes: func(*testing.T) []*Node {
				return []*Node{counted("c0", "a", 8, false)}
			},
			demands:   workers(1, 1),
			wantInMsg: "1 node(s) with free GPUs have no fresh GPU topology, and missingTopology Unschedulable keeps GPU pods off them",
		},
		{
			name: "missingTopology Unschedulable leaves pods without GPUs alone",
			nodes: func(*testing.T) []*Node {
				return []*Node{counted("c0", "a", 8, false)}
			},
			demands: []Demand{{Role: "coordinator"}}, want: Placement{"c0"}, wantFits: true,
		},
		{
			name: "count-only GPUs count towards the tightest node",
			nodes: func(t *testing.T) []*Node {
				return []*Node{counted("c0", "a", 8, true), node(t, "busy", "dgx-h100", "a", 0, 1, 2, 3)}
			},
			demands: workers(1, 4), want: Placement{"busy"}, wantFits: true,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			nodes := tc.nodes(t)
			res := NewFitter(nodes, "rack").Place(tc.demands)
			if res.Fits != tc.wantFits {
				t.Fatalf("fits = %v (%s), want %v", res.Fits, res.Message, tc.wantFits)
			}
			if tc.wantFits {
				if diff := cmp.Diff(tc.want, res.Placement); diff != "" {
					t.Errorf("placement (-want +got):\n%s", diff)
				}
			}
			if tc.wantInMsg != "" && !strings.Contains(res.Message, tc.wantInMsg) {
				t.Errorf("message %q lacks %q", res.Message, tc.wantInMsg)
			}
			if tc.notInMsg != "" && strings.Contains(res.Message, tc.notInMsg) {
				t.Errorf("message %q has %q", res.Message, tc.notInMsg)
			}
		})
	}
}

// A gang that fits keeps what it took: the next gang sees it taken. One
// that does not fit takes nothing.
func TestPlaceCommitsOnlyWhatFits(t *testing.T) {
	f := NewFitter([]*Node{node(t, "a0", "dgx-h100", "a")}, "rack")
	if res := f.Place(workers(2, 8)); res.Fits {
		t.Fatal("two 8-GPU pods fit one node")
	}
	if res := f.Place(workers(1, 8)); !res.Fits {
		t.Fatalf("one 8-GPU pod does not fit an idle node: %s", res.Message)
	}
	if res := f.Place(workers(1, 1)); res.Fits {
		t.Fatal("a GPU fit on a node the previous gang filled")
	}
}

// A count-only node's GPUs are taken by count: a gang that fits leaves the
// rest for the next.
func TestPlaceTakesCountedGPUs(t *testing.T) {
	f := NewFitter([]*Node{counted("c0", "a", 8, true)}, "rack")
	if res := f.Place(workers(1, 6)); !res.Fits {
		t.Fatalf("a 6-GPU pod does not fit 8 GPUs by count: %s", res.Message)
	}
	if res := f.Place(workers(1, 3)); res.Fits {
		t.Fatal("a 3-GPU pod fit the 2 GPUs left by count")
	}
	if res := f.Place(workers(1, 2)); !res.Fits {
		t.Fatalf("a 2-GPU pod does not fit the 2 GPUs left by count: %s", res.Message)
	}
}
