package nvlink

import (
	"context"
	"testing"

	"k8s.io/kubernetes/pkg/scheduler/framework"
)

// BenchmarkFilterScore is the plugin's cost per node for one pod: Filter
// and Score of a 2-GPU pod on a DGX H100 that runs three pods, for a node
// that changed since the last cycle (searched) and one that did not (cached).
func BenchmarkFilterScore(b *testing.B) {
	for _, tc := range []struct {
		name    string
		changed bool
	}{{"node changed", true}, {"node unchanged", false}} {
		b.Run(tc.name, func(b *testing.B) {
			pl := testPlugin(&testing.T{}, "", map[string]string{"dgx": "dgx-h100"})
			info := nodeInfo("dgx", 8, nil, gpuPod("a", 1, "0"), gpuPod("b", 2, "3,4"), gpuPod("c", 1, "6"))
			pod := gpuPod("p", 2, "")
			state := framework.NewCycleState()
			if _, st := pl.PreFilter(context.Background(), state, pod, nil); !st.IsSuccess() {
				b.Fatal(st)
			}
			for b.Loop() {
				if tc.changed {
					pl.topologies.get("dgx").cache.Store(nil)
				}
				if st := pl.Filter(context.Background(), state, pod, info); !st.IsSuccess() {
					b.Fatal(st)
				}
				if _, st := pl.Score(context.Background(), state, pod, info); !st.IsSuccess() {
					b.Fatal(st)
				}
			}
		})
	}
}
