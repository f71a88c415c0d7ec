package fragmentation

import (
	"testing"

	frag "tessera.dev/tessera/pkg/fragmentation"
)

// Two snapshots of one mix's tasks, the weights moved between them, as a
// learned mix's refresh moves them.
func refreshedMix() (before, after *mixSnapshot, pod frag.Task) {
	whole := frag.Task{CPUMilli: 1000, GPUs: 1, GPUMilli: frag.MilliGPU}
	pair := frag.Task{CPUMilli: 1000, GPUs: 2, GPUMilli: frag.MilliGPU}
	share := frag.Task{CPUMilli: 1000, GPUs: 1, GPUMilli: 300}
	before = snapshotOf(1, []frag.Shape{{Task: whole, Weight: 5}, {Task: pair, Weight: 3}, {Task: share, Weight: 1}}, nil)
	after = snapshotOf(2, []frag.Shape{{Task: share, Weight: 6}, {Task: whole, Weight: 2}, {Task: pair, Weight: 1}}, before.set)
	return before, after, share
}

// A refresh that moves only the weights reweighs the node's fragments,
// and gives what measuring afresh gives.
func TestRefreshedMixReweighsTheFragments(t *testing.T) {
	before, after, share := refreshedMix()
	if after.set != before.set {
		t.Fatal("a refresh with the same tasks made a new shape set")
	}
	acct := accountant{"n": {1000, 700, 1000, 1000}}
	info := node("n", "32", 4)
	cached := newPlugin(t, "", acct)
	old, _ := cached.view(info, before).delta(keyOf(share), share, frag.MeasureBoth)
	reweighed := cached.view(info, after)
	got, fits := reweighed.delta(keyOf(share), share, frag.MeasureBoth)
	want, wantFits := newPlugin(t, "", acct).view(info, after).delta(keyOf(share), share, frag.MeasureBoth)
	if got != want || fits != wantFits {
		t.Errorf("after the refresh: delta %v (fits %v), measured afresh %v (fits %v)", got, fits, want, wantFits)
	}
	if got == old {
		t.Fatalf("the weights moved but the delta did not (%v): the test's mixes do not tell the two apart", got)
	}
	if p := reweighed.deltas.Load(); p == nil || len(*p) != 1 {
		t.Errorf("the share's delta was not carried over the refresh: %v", p)
	}
}

// A refresh measures the node again: its accounting can move without a
// NodeInfo generation (a topology gone stale, a GPU's health), and the
// fragments of the old measurement are then not reused.
func TestRefreshedMixMeasuresTheNodeAgain(t *testing.T) {
	before, after, share := refreshedMix()
	acct := accountant{"n": {1000, 700, 1000, 1000}}
	info := node("n", "32", 4)
	cached := newPlugin(t, "", acct)
	cached.view(info, before).delta(keyOf(share), share, frag.MeasureBoth)
	acct["n"] = []int64{1000, 1000, 0, 0} // the same generation
	got, _ := cached.view(info, after).delta(keyOf(share), share, frag.MeasureBoth)
	want, _ := newPlugin(t, "", acct).view(info, after).delta(keyOf(share), share, frag.MeasureBoth)
	if got != want {
		t.Errorf("after the refresh: delta %v, measured afresh %v", got, want)
	}
}

// A refresh that brings a new task makes a new shape set: fragments by the
// old tasks cannot be reweighed.
func TestNewTaskMakesNewShapeSet(t *testing.T) {
	before, _, _ := refreshedMix()
	quad := frag.Task{CPUMilli: 1000, GPUs: 4, GPUMilli: frag.MilliGPU}
	next := snapshotOf(2, append([]frag.Shape{{Task: quad, Weight: 1}}, before.shapes...), before.set)
	if next.set == before.set {
		t.Error("a refresh with a new task kept the old shape set")
	}
	fewer := snapshotOf(3, before.shapes[:2], before.set)
	if fewer.set == before.set {
		t.Error("a refresh that lost a task kept the old shape set")
	}
}
