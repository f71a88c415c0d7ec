package nvlink

import (
	"context"
	"fmt"
	"testing"

	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework"
)

// BenchmarkCycle is the plugin's cost per node in scheduling cycles on a
// 5,000-node cluster, as kube-scheduler calls it: Filter on 600 nodes, then
// Score on the 500 it keeps, for pods of alternating shapes, with the
// caches the other plugins would use in between trampled (the plugin's
// per-node state is then read from memory, as in a real scheduler). One
// node changes per cycle (the last pod's).
func BenchmarkCycle(b *testing.B) {
	const nodes, filtered, scored = 5000, 600, 500
	shapes := map[string]string{}
	for i := range nodes {
		shapes[fmt.Sprintf("dgx-%05d", i)] = "dgx-h100"
	}
	pl := testPlugin(&testing.T{}, "", shapes)
	infos := make([]fwk.NodeInfo, nodes)
	for i := range infos {
		name := fmt.Sprintf("dgx-%05d", i)
		infos[i] = nodeInfo(name, 8, nil, gpuPod(name+"-a", 1+i%2, fmt.Sprint(i%8)))
	}
	pods := []int{1, 2, 1, 4, 1, 2}
	trample := make([]byte, benchTrample)
	cycle := 0
	for b.Loop() {
		pod := gpuPod(fmt.Sprintf("p-%d", cycle), pods[cycle%len(pods)], "")
		state := framework.NewCycleState()
		if _, st := pl.PreFilter(context.Background(), state, pod, infos); !st.IsSuccess() {
			b.Fatal(st)
		}
		start := cycle * 37 % nodes
		for i := range filtered {
			_ = pl.Filter(context.Background(), state, pod, infos[(start+i)%nodes])
		}
		b.StopTimer()
		for i := range trample {
			trample[i]++
		}
		b.StartTimer()
		for i := range scored {
			if _, st := pl.Score(context.Background(), state, pod, infos[(start+i)%nodes]); !st.IsSuccess() {
				b.Fatal(st)
			}
		}
		b.StopTimer()
		for i := range trample {
			trample[i]++
		}
		b.StartTimer()
		// The last pod's node changes.
		infos[start].(*framework.NodeInfo).Generation++
		cycle++
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*(filtered+scored)), "ns/call")
}

var benchTrample = 8 << 20
