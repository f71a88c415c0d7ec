package topology

import "testing"

func TestUsage(t *testing.T) {
	u := NewUsage(4)
	u.Take([]int{0}, 600)
	u.Take([]int{0}, 300)
	u.Take([]int{1, 2}, MilliGPU)
	u.Take([]int{9}, 100) // an unknown position is ignored
	if u.Free(0) != 100 || u.Free(1) != 0 || u.Free(3) != MilliGPU {
		t.Errorf("free = %d %d %d, want 100 0 1000", u.Free(0), u.Free(1), u.Free(3))
	}
	if u.Idle(0) || !u.Idle(3) {
		t.Error("a GPU with a share is idle, or an untouched one is not")
	}
	u.Take([]int{1}, 500) // over-committed by a drift: free stays 0
	if u.Free(1) != 0 {
		t.Errorf("free of an over-committed GPU = %d, want 0", u.Free(1))
	}
	all := []int{0, 1, 2, 3}
	for _, tc := range []struct {
		milli int64
		want  int
		ok    bool
	}{{100, 0, true}, {101, 3, true}, {1000, 3, true}} {
		if got, ok := u.PickShare(all, tc.milli); got != tc.want || ok != tc.ok {
			t.Errorf("PickShare(%d) = %d, %v; want %d, %v", tc.milli, got, ok, tc.want, tc.ok)
		}
	}
	if _, ok := u.PickShare([]int{0, 1, 2}, 200); ok {
		t.Error("PickShare found room for 200 among GPUs with 100, 0 and 0 free")
	}
}
