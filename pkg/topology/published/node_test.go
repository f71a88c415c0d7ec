package published

import (
	"testing"
	"time"
)

func TestStale(t *testing.T) {
	now := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	cases := []struct {
		name      string
		heartbeat time.Time
		wantWhy   string
		wantStale bool
	}{
		{name: "no heartbeat", wantWhy: "GPUNodeTopology has no heartbeat", wantStale: true},
		{name: "fresh", heartbeat: now.Add(-time.Minute)},
		{name: "exactly at the limit", heartbeat: now.Add(-15 * time.Minute)},
		{name: "older than the limit", heartbeat: now.Add(-16 * time.Minute), wantWhy: "GPUNodeTopology heartbeat is 16m0s old", wantStale: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			why, stale := (&Node{Heartbeat: tc.heartbeat}).Stale(now, 15*time.Minute)
			if why != tc.wantWhy || stale != tc.wantStale {
				t.Errorf("Stale = %q, %v; want %q, %v", why, stale, tc.wantWhy, tc.wantStale)
			}
		})
	}
}
