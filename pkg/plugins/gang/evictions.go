package gang

import (
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
)

// evictionWindow is how long a chosen victim counts as leaving before its
// deletion shows in the scheduler's cache (as a DeletionTimestamp, or the
// pod gone). The delete is sent off the scheduling goroutine: without this,
// the next preemptor, a cycle later, would see the victim still running
// and choose it again, evicting a second pod for room that is taken.
const evictionWindow = 30 * time.Second

// evictions remembers the victims chosen, by every profile of the process,
// for evictionWindow, or until their eviction turns out not to happen (a
// failed delete; a victim rejected at Permit that is reserved again).
type evictions struct {
	mu    sync.Mutex
	since map[types.UID]time.Time
}

func newEvictions() *evictions { return &evictions{since: map[types.UID]time.Time{}} }

// add records victims chosen at now, and forgets those past the window.
func (e *evictions) add(now time.Time, uids ...types.UID) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for uid, at := range e.since {
		if now.Sub(at) > evictionWindow {
			delete(e.since, uid)
		}
	}
	for _, uid := range uids {
		e.since[uid] = now
	}
}

// pending reports whether uid was chosen as a victim within the window.
func (e *evictions) pending(now time.Time, uid types.UID) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	at, ok := e.since[uid]
	return ok && now.Sub(at) <= evictionWindow
}

// forget drops uid: its eviction failed, or it was rejected at Permit and
// reserved again since.
func (e *evictions) forget(uid types.UID) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.since, uid)
}
