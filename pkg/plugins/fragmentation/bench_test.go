package fragmentation

import (
	"context"
	"fmt"
	"testing"

	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework"
)

// BenchmarkScore is the per-node cost of Score on 8-GPU nodes against a
// learned mix of 8 shapes: "unchanged" nodes hit the per-shape cache, as
// all but the last-bound node do from one pod to the next; after "mix
// refreshed" (every 64 pods) and "changed" each node is measured afresh.
func BenchmarkScore(b *testing.B) {
	pl := newPlugin(b, "", nil)
	for i := range 64 {
		p := pod(fmt.Sprintf("seen-%d", i), fmt.Sprint(1+i%4), int64(1+i%8), "")
		if _, st := pl.PreFilter(context.Background(), framework.NewCycleState(), p, nil); !st.IsSuccess() {
			b.Fatal(st)
		}
	}
	nodes := make([]fwk.NodeInfo, 1000)
	for i := range nodes {
		nodes[i] = node(fmt.Sprintf("n%d", i), "96", 8, pod(fmt.Sprintf("busy-%d", i), "4", int64(i%8), ""))
	}
	p := pod("p", "2", 2, "")
	state := framework.NewCycleState()
	if st := pl.PreScore(context.Background(), state, p, nodes); !st.IsSuccess() {
		b.Fatal(st)
	}
	run := func(b *testing.B, change string) {
		for b.Loop() {
			if change == "mix" {
				cs, _ := state.Read(stateKey)
				m := cs.(*cycleState).mix
				cs.(*cycleState).mix = snapshotOf(m.version+1, m.shapes, m.set)
			}
			for _, n := range nodes {
				if change == "node" {
					pl.views.delete(n.Node().Name)
				}
				if _, st := pl.Score(context.Background(), state, p, n); !st.IsSuccess() {
					b.Fatal(st)
				}
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(nodes)), "ns/node")
	}
	b.Run("unchanged", func(b *testing.B) { run(b, "") })
	b.Run("mix refreshed", func(b *testing.B) { run(b, "mix") })
	b.Run("changed", func(b *testing.B) { run(b, "node") })
}
