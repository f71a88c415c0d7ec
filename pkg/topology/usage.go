package topology

// MilliGPU is one whole GPU in milli-GPUs, the unit GPU shares are counted in.
const MilliGPU = 1000

// Usage is how much of each GPU of a node (by position) its pods hold, in
// milli-GPUs. Whole GPUs and shares are counted in the same unit, so a GPU
// holds either one whole-GPU pod or shares summing to at most MilliGPU, and
// the two kinds of assignment can never count the same capacity twice.
type Usage []int64

// NewUsage returns the usage of n GPUs that nobody holds.
func NewUsage(n int) Usage { return make(Usage, n) }

// Take records that a pod holds milli of each GPU at positions.
func (u Usage) Take(positions []int, milli int64) {
	for _, p := range positions {
		if p >= 0 && p < len(u) {
			u[p] += milli
		}
	}
}

// Free is how much of the GPU at position p nobody holds.
func (u Usage) Free(p int) int64 { return max(MilliGPU-u[p], 0) }

// Idle reports whether nobody holds any of the GPU at position p: only
// such a GPU can be given whole.
func (u Usage) Idle(p int) bool { return u[p] == 0 }

// PickShare picks, among candidates (positions), the GPU for a share of
// milli: the one whose free capacity fits it most tightly, so that shares
// fill partly used GPUs before they break into idle ones and idle GPUs stay
// whole for whole-GPU pods; the lowest position on a tie. False if no
// candidate has milli free.
func (u Usage) PickShare(candidates []int, milli int64) (int, bool) {
	best, bestFree := -1, int64(0)
	for _, p := range candidates {
		f := u.Free(p)
		if f < milli {
			continue
		}
		if best < 0 || f < bestFree || f == bestFree && p < best {
			best, bestFree = p, f
		}
	}
	return best, best >= 0
}
