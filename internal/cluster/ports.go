package cluster

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"
)

// A port is free only until its component binds it, and the kernel offers
// a port it closed a moment ago again, to this process or another: two
// ports asked for one after the other (a controller's health probe and
// webhook server) came back equal once, and the second bind failed with
// "address already in use". So FreePort reserves each port it returns, for
// reservedFor, in a directory that every process on the machine (the
// integration test packages run in parallel) checks. The directory holds
// a file per port ever reserved, a few thousand at most; a stale one is
// renewed, never removed.
const reservedFor = 10 * time.Minute

var (
	reservationsMu sync.Mutex
	reservations   = filepath.Join(os.TempDir(), fmt.Sprintf("tessera-free-ports-%d", os.Getuid()))
)

// FreePort asks the kernel for a free TCP port on 127.0.0.1, for a
// component to listen on. It returns no port that a FreePort call of this
// or another process returned in the last reservedFor. A process that does
// not call FreePort may still take the port before the component binds it.
func FreePort() (int, error) {
	reservationsMu.Lock()
	defer reservationsMu.Unlock()
	if err := os.MkdirAll(reservations, 0o755); err != nil {
		return 0, fmt.Errorf("the free-port reservations: %w", err)
	}
	// A port already reserved stays held while the next one is asked for,
	// so that the kernel cannot offer it again.
	var held []net.Listener
	defer func() {
		for _, l := range held {
			_ = l.Close()
		}
	}()
	for {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		held = append(held, l)
		port := l.Addr().(*net.TCPAddr).Port
		ok, err := reserve(port)
		if err != nil {
			return 0, err
		}
		if ok {
			return port, nil
		}
	}
}

// reserve records port as handed out, unless a reservation younger than
// reservedFor holds it.
func reserve(port int) (bool, error) {
	path := filepath.Join(reservations, strconv.Itoa(port))
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err == nil {
		return true, f.Close()
	}
	if !errors.Is(err, fs.ErrExist) {
		return false, fmt.Errorf("reserving port %d: %w", port, err)
	}
	info, err := os.Stat(path)
	if err != nil || time.Since(info.ModTime()) < reservedFor {
		return false, nil
	}
	now := time.Now()
	if err := os.Chtimes(path, now, now); err != nil {
		return false, fmt.Errorf("renewing the reservation of port %d: %w", port, err)
	}
	return true, nil
}
