package cluster

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The kernel offers recently closed ports again: among a thousand ports
// asked for one after the other, some come back twice unless FreePort
// remembers what it handed out.
func TestFreePortNeverReturnsAPortTwice(t *testing.T) {
	useReservations(t)
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

// Another process's FreePort must not return the ports this one did: the
// integration test packages run side by side.
func TestFreePortSkipsPortsAnotherProcessReserved(t *testing.T) {
	dir := useReservations(t)
	if os.Getenv("FREEPORT_CHILD") != "" {
		for range 500 {
			p, err := FreePort()
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("FreePort returned %d", p)
		}
		return
	}
	child := func() []string {
		cmd := exec.Command(os.Args[0], "-test.run=^TestFreePortSkipsPortsAnotherProcessReserved$", "-test.v")
		cmd.Env = append(os.Environ(), "FREEPORT_CHILD=1", "FREEPORT_DIR="+dir)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("child: %v\n%s", err, out)
		}
		var ports []string
		for _, line := range strings.Split(string(out), "\n") {
			if _, p, ok := strings.Cut(line, "FreePort returned "); ok {
				ports = append(ports, p)
			}
		}
		return ports
	}
	first := map[string]bool{}
	for _, p := range child() {
		first[p] = true
	}
	if len(first) != 500 {
		t.Fatalf("the first child returned %d distinct ports, want 500", len(first))
	}
	for _, p := range child() {
		if first[p] {
			t.Fatalf("both children returned port %s", p)
		}
	}
}

// A reservation older than reservedFor no longer holds its port.
func TestAStaleReservationIsTakenOver(t *testing.T) {
	dir := useReservations(t)
	if ok, err := reserve(4242); !ok || err != nil {
		t.Fatalf("first reservation: %v, %v", ok, err)
	}
	if ok, _ := reserve(4242); ok {
		t.Fatal("a fresh reservation was taken over")
	}
	stale := time.Now().Add(-reservedFor - time.Second)
	if err := os.Chtimes(filepath.Join(dir, "4242"), stale, stale); err != nil {
		t.Fatal(err)
	}
	if ok, err := reserve(4242); !ok || err != nil {
		t.Fatalf("a stale reservation was not taken over: %v, %v", ok, err)
	}
	if ok, _ := reserve(4242); ok {
		t.Fatal("a reservation taken over was not renewed")
	}
}

// useReservations points FreePort at a directory of the test's own (the
// one FREEPORT_DIR names, for a child).
func useReservations(t *testing.T) string {
	dir := os.Getenv("FREEPORT_DIR")
	if dir == "" {
		dir = t.TempDir()
	}
	saved := reservations
	reservations = dir
	t.Cleanup(func() { reservations = saved })
	return dir
}
