package nvlink

import (
	"context"
	"testing"

	"k8s.io/kubernetes/pkg/scheduler/framework"
)

// BenchmarkFilterScore is the plugin's cost per node for one pod: Filter
// and Score of a 2-GPU pod on a DGX H100 that runs three pods.
func BenchmarkFilterScore(b *testing.B) {
	t := &testing.T{}
	pl := testPlugin(t, "", map[string]string{"dgx": "dgx-h100"})
	info := nodeInfo("dgx", 8, nil, gpuPod("a", 1, "0"), gpuPod("b", 2, "3,4"), gpuPod("c", 1, "6"))
	pod := gpuPod("p", 2, "")
	state := framework.NewCycleState()
	if _, st := pl.PreFilter(context.Background(), state, pod, nil); !st.IsSuccess() {
		b.Fatal(st)
	}
	for b.Loop() {
		if st := pl.Filter(context.Background(), state, pod, info); !st.IsSuccess() {
			b.Fatal(st)
		}
		if _, st := pl.Score(context.Background(), state, pod, info); !st.IsSuccess() {
			b.Fatal(st)
		}
	}
}
