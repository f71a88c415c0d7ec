package nvlink

import (
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"

	"tessera.dev/tessera/pkg/topology/published"
)

var klogDiscard = klog.Background().V(10)

func unknown(raw string) runtime.Object {
	return &runtime.Unknown{Raw: []byte(raw), ContentType: runtime.ContentTypeJSON}
}

// freeGPUs returns the positions of the node's healthy GPUs that no pod in
// info holds any part of (see useOf).
func freeGPUs(n *published.Node, info fwk.NodeInfo, held *reservations) (free []int, ok bool) {
	used, ok := useOf(n, info, holders{reserved: held})
	if !ok {
		return nil, false
	}
	return n.Idle(used, ""), true
}
