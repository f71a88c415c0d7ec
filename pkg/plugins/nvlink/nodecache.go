package nvlink

import (
	"maps"

	fwk "k8s.io/kube-scheduler/framework"

	"tessera.dev/tessera/pkg/topology"
)

// The cached answers of a node: its free GPUs and its search results, for
// the node's state as of a NodeInfo generation. The scheduler bumps a
// node's generation on every change of its pods (including assumed and
// forgotten pods), and a reservation is made or dropped only with such a
// change, so an entry of the same generation is still true. Between two
// cycles only the node the last pod went to changes: the other nodes'
// answers are reused instead of searched again.

// cachedNode is immutable once stored.
type cachedNode struct {
	generation int64
	free       []int
	fits       bool
	// searches are the search results by request (GPU count, locality).
	searches map[request]search
}

type search struct {
	choice topology.Choice
	found  bool
	// raw is the choice's raw score (see rawScore).
	raw int64
}

func (st *nodeState) cached(info fwk.NodeInfo) *cachedNode {
	if e := st.cache.Load(); e != nil && e.generation == info.GetGeneration() {
		return e
	}
	return nil
}

// free returns freeGPUs of the node, cached.
func (st *nodeState) free(info fwk.NodeInfo, held *reservations) ([]int, bool) {
	if e := st.cached(info); e != nil {
		return e.free, e.fits
	}
	free, fits := freeGPUs(st.gpus, info, held)
	st.cache.Store(&cachedNode{generation: info.GetGeneration(), free: free, fits: fits})
	return free, fits
}

// bestSet returns the best set for req on the node and its raw score,
// cached.
func (st *nodeState) bestSet(info fwk.NodeInfo, held *reservations, req request) (choice topology.Choice, raw int64, found bool) {
	e := st.cached(info)
	if e == nil {
		free, fits := freeGPUs(st.gpus, info, held)
		e = &cachedNode{generation: info.GetGeneration(), free: free, fits: fits}
	}
	if r, ok := e.searches[req]; ok {
		return r.choice, r.raw, r.found
	}
	var r search
	if e.fits {
		r.choice, r.found = st.gpus.bestSet(e.free, req.gpus, req.islandOnly)
	}
	if r.found {
		r.raw = rawScore(r.choice, st.gpus, e.free)
	}
	searches := make(map[request]search, len(e.searches)+1)
	maps.Copy(searches, e.searches)
	searches[req] = r
	st.cache.Store(&cachedNode{generation: e.generation, free: e.free, fits: e.fits, searches: searches})
	return r.choice, r.raw, r.found
}
