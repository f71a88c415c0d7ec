package gang

import (
	"testing"
	"time"
)

func TestEvictionsCountAsLeavingForTheirWindowOnly(t *testing.T) {
	e := newEvictions()
	e.add(t0, "v1", "v2")
	if !e.pending(t0.Add(evictionWindow), "v1") {
		t.Error("v1 not pending within the window")
	}
	if e.pending(t0.Add(evictionWindow+time.Second), "v1") {
		t.Error("v1 still pending past the window")
	}
	// A failed delete, or a member reserved again after its rejection.
	e.forget("v2")
	if e.pending(t0, "v2") {
		t.Error("v2 pending after it was forgotten")
	}
	e.add(t0.Add(2*evictionWindow), "v3")
	if len(e.since) != 1 {
		t.Errorf("%d victims remembered, want the old ones pruned", len(e.since))
	}
}
