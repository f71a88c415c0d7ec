package main

import (
	"context"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	ctrlclient "sigs.k8s.io/controller-runtime/pkg/client"

	"tessera.dev/tessera/hack/bench/benchkit"
	"tessera.dev/tessera/internal/gpunodes"
	"tessera.dev/tessera/pkg/topology"
	"tessera.dev/tessera/pkg/topology/nvmlfake"
	"tessera.dev/tessera/pkg/topology/nvmlsource"
)

// rackLayout is one rack of the mixed cluster: nodes of one shape.
type rackLayout struct {
	name, shape string
	nodes       int
}

// mixedCluster is the placement cluster: four racks of DGX H100, a rack of
// NVLink-bridged H100 NVL pairs and a rack of PCIe-only L40S servers.
func mixedCluster(dgxRacks, perRack int) []rackLayout {
	var racks []rackLayout
	for i := range dgxRacks {
		racks = append(racks, rackLayout{fmt.Sprintf("rack-%d", i), "dgx-h100", perRack})
	}
	return append(racks,
		rackLayout{fmt.Sprintf("rack-%d", dgxRacks), "h100-nvl-pairs", perRack},
		rackLayout{fmt.Sprintf("rack-%d", dgxRacks+1), "l40s-pcie", perRack})
}

// node is one simulated node and the GPUs the ledger has handed out on it.
type node struct {
	name, rack, shape string
	topo              *topology.Topology
	used              []bool
}

func (n *node) free() []int {
	var f []int
	for i, u := range n.used {
		if !u {
			f = append(f, i)
		}
	}
	return f
}

// largestFreeIsland is the most free GPUs in one NVLink island of the node.
func (n *node) largestFreeIsland() int {
	best := 0
	for _, island := range n.topo.Islands() {
		free := 0
		for _, g := range island {
			if !n.used[g] {
				free++
			}
		}
		best = max(best, free)
	}
	return best
}

// sameIsland reports whether gpus share one NVLink island.
func (n *node) sameIsland(gpus []int) bool {
	for _, island := range n.topo.Islands() {
		if slices.Contains(island, gpus[0]) {
			for _, g := range gpus {
				if !slices.Contains(island, g) {
					return false
				}
			}
			return true
		}
	}
	return false
}

// shapeTopologies discovers each fake shape once, as its node agent would.
func shapeTopologies(shapes []string) (map[string]*topology.Topology, error) {
	out := map[string]*topology.Topology{}
	for _, s := range shapes {
		f, err := nvmlfake.New(s, "shape")
		if err != nil {
			return nil, err
		}
		src, err := nvmlsource.New(f)
		if err != nil {
			return nil, err
		}
		d, err := topology.Discover(src)
		if err != nil {
			return nil, err
		}
		out[s] = d.Topology
	}
	return out, nil
}

// createNodes creates the nodes of racks (named <rack>-<i>), publishes each
// one's GPUNodeTopology as its node agent would, waits until kwok has made
// them Ready, and returns them.
func createNodes(ctx context.Context, client kubernetes.Interface, cr ctrlclient.Client, racks []rackLayout, topos map[string]*topology.Topology) ([]*node, error) {
	var nodes []*node
	for _, r := range racks {
		for i := range r.nodes {
			nodes = append(nodes, &node{name: fmt.Sprintf("%s-%03d", r.name, i), rack: r.name, shape: r.shape,
				topo: topos[r.shape], used: make([]bool, len(topos[r.shape].GPUs))})
		}
	}
	err := benchkit.Parallel(len(nodes), 16, func(i int) error {
		n := nodes[i]
		shape, err := gpunodes.Lookup(n.shape)
		if err != nil {
			return err
		}
		if _, err := client.CoreV1().Nodes().Create(ctx, shape.Node(n.name, n.rack), metav1.CreateOptions{}); err != nil {
			return err
		}
		// The benchmark outlasts no heartbeat window (15 minutes by default).
		_, err = gpunodes.PublishTopology(ctx, cr, n.name, n.shape, time.Now())
		return err
	})
	if err != nil {
		return nil, err
	}
	names := map[string]bool{}
	for _, n := range nodes {
		names[n.name] = true
	}
	err = wait.PollUntilContextTimeout(ctx, time.Second, 5*time.Minute, true, func(ctx context.Context) (bool, error) {
		list, err := client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil
		}
		ready := 0
		for _, n := range list.Items {
			for _, c := range n.Status.Conditions {
				if names[n.Name] && c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
					ready++
				}
			}
		}
		return ready == len(nodes), nil
	})
	return nodes, err
}
