// Package perprofile connects plugins of the same scheduler profile: one
// plugin offers a service (the NVLinkTopology plugin's node order for gang
// plans, its GPU accounting) and another of the same profile uses it. Each
// profile has its own framework handle, which keys the link; plugin
// factories run in no fixed order, so users look the service up when they
// need it, not at construction.
package perprofile

import (
	"sync"

	fwk "k8s.io/kube-scheduler/framework"
)

// Links holds one service of type T per profile. One is shared by the
// plugin factories of one scheduler.
type Links[T any] struct {
	mu sync.RWMutex
	m  map[fwk.Handle]T
}

// New returns an empty set of links.
func New[T any]() *Links[T] { return &Links[T]{m: map[fwk.Handle]T{}} }

// Set offers service to the plugins of the profile behind handle.
func (l *Links[T]) Set(handle fwk.Handle, service T) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.m[handle] = service
}

// Get returns the profile's service; false if none was offered (or l is nil).
func (l *Links[T]) Get(handle fwk.Handle) (T, bool) {
	var zero T
	if l == nil {
		return zero, false
	}
	l.mu.RLock()
	defer l.mu.RUnlock()
	s, ok := l.m[handle]
	if !ok {
		return zero, false
	}
	return s, true
}
