package cluster

import "testing"

// The kernel offers recently closed ports again: among a thousand ports
// asked for one after the other, some come back twice unless FreePort
// remembers what it handed out.
func TestFreePortNeverReturnsAPortTwice(t *testing.T) {
	seen := map[int]int{}
	for i := range 1000 {
		p, err := FreePort()
		if err != nil {
			t.Fatal(err)
		}
		if first, ok := seen[p]; ok {
			t.Fatalf("call %d returned port %d, which call %d had returned", i, p, first)
		}
		seen[p] = i
	}
}
