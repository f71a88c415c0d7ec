package nvlink

import (
	"slices"

	fwk "k8s.io/kube-scheduler/framework"

	"tessera.dev/tessera/pkg/topology"
)

// The cached answers of a node: how its GPUs are held and its search
// results, for the node's state as of a NodeInfo generation. The scheduler
// bumps a node's generation on every change of its pods (including assumed
// and forgotten pods), and a reservation is made or dropped only with such
// a change, so an entry of the same generation is still true. Between two
// cycles only the node the last pod went to changes: the other nodes'
// answers are reused instead of searched again. The one change without a
// generation bump, a reservation replaced by the pod's claims' allocation,
// bumps the node's epoch instead, which entries are keyed by too.

// cachedNode is immutable once stored.
type cachedNode struct {
	generation, epoch int64
	used              topology.Usage
	// free are the healthy GPUs nobody holds any part of.
	free []int
	fits bool
	// searches are the search results, one per request: a pod shape or
	// two, rarely more than ten, so a slice is searched faster than a map
	// is hashed, and copied cheaply.
	searches []search
}

type search struct {
	request
	choice topology.Choice
	found  bool
	// raw is the choice's raw score (see rawScore).
	raw int64
}

// entry returns the node's cached entry for info's generation, computing
// the GPU use if the cache is older.
func (st *nodeState) entry(info fwk.NodeInfo, held holders) *cachedNode {
	epoch := st.epoch.Load()
	if e := st.cache.Load(); e != nil && e.generation == info.GetGeneration() && e.epoch == epoch {
		return e
	}
	used, fits := useOf(st.gpus, info, held)
	e := &cachedNode{generation: info.GetGeneration(), epoch: epoch, used: used, fits: fits}
	if fits {
		e.free = st.gpus.Idle(used, "")
	}
	st.cache.Store(e)
	return e
}

// bestSet returns the best GPUs for req on the node and their raw score,
// cached.
func (st *nodeState) bestSet(info fwk.NodeInfo, held holders, req request) (choice topology.Choice, raw int64, found bool) {
	e := st.entry(info, held)
	for i := range e.searches {
		if r := &e.searches[i]; r.request == req {
			return r.choice, r.raw, r.found
		}
	}
	r := search{request: req}
	if e.fits {
		r.choice, r.found = choose(st.gpus, e.used, req)
	}
	if r.found {
		r.raw = rawScore(r.choice, st.gpus, e.free)
	}
	searches := append(slices.Clip(e.searches), r)
	st.cache.Store(&cachedNode{generation: e.generation, epoch: e.epoch, used: e.used, free: e.free, fits: e.fits, searches: searches})
	return r.choice, r.raw, r.found
}
