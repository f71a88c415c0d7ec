package simkit

import (
	"testing"

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
