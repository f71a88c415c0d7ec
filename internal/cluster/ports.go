package cluster

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// A port is free only until its component binds it, and the kernel offers
// a port it closed a moment ago again, to this process or another: two
// ports asked for one after the other (a controller's health probe and
// webhook server) came back equal once, and the second bind failed with
// "address already in use". So FreePort reserves each port it returns, for
// reservedFor, in a directory that every process of this user on the
// machine checks (the integration test packages run side by side). The
// directory holds a file per port ever reserved, a few thousand at most; a
// stale one is renewed, never removed.
const reservedFor = 10 * time.Minute

var reservations = filepath.Join(os.TempDir(), fmt.Sprintf("tessera-free-ports-%d", os.Getuid()))

// FreePort asks the kernel for a free TCP port on 127.0.0.1, for a
// component to listen on. It returns no port that a FreePort call of this
// or another process of this user returned in the last reservedFor. A
// process that does not call FreePort may still take the port before the
// component binds it.
func FreePort() (int, error) {
	if err := ownDirectory(reservations); err != nil {
		return 0, fmt.Errorf("the free-port reservations: %w", err)
	}
	// Every port asked for stays held until FreePort returns. The kernel
	// then offers a reserved port only once, so the loop ends (at the
	// latest when ports or descriptors run out), and no other process is
	// offered the port whose stale reservation this one takes over.
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
// reservedFor holds it, or one as far in the future (the clock was set
// back a little); one that cannot be read holds its port.
func reserve(port int) (bool, error) {
	path := filepath.Join(reservations, strconv.Itoa(port))
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err == nil {
		return true, f.Close()
	}
	if !errors.Is(err, fs.ErrExist) {
		return false, fmt.Errorf("reserving port %d: %w", port, err)
	}
	info, err := os.Stat(path)
	if err != nil {
		return false, nil
	}
	if age := time.Since(info.ModTime()); age > -reservedFor && age < reservedFor {
		return false, nil
	}
	now := time.Now()
	if err := os.Chtimes(path, now, now); err != nil {
		return false, fmt.Errorf("renewing the reservation of port %d: %w", port, err)
	}
	return true, nil
}

// ownDirectory makes dir, or checks that it is a directory of this user's
// (not a link another user planted in the shared temp dir).
func ownDirectory(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	info, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	if !info.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	if st, ok := info.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Getuid() {
		return fmt.Errorf("%s belongs to user %d, not %d", dir, st.Uid, os.Getuid())
	}
	return nil
}
