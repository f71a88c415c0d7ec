package cluster

import (
	"net"
	"sync"
)

// handedOut are the ports FreePort has returned in this process. A port
// is free only until its component binds it, and the kernel may offer a
// port it closed a moment ago again: two ports asked for one after the
// other (a controller's health probe and webhook server) came back equal
// once, and the second bind failed with "address already in use".
var handedOut = struct {
	sync.Mutex
	ports map[int]bool
}{ports: map[int]bool{}}

// FreePort asks the kernel for a free TCP port on 127.0.0.1, for a
// component to listen on. It never returns a port twice in one process.
// Another process may still take the port before the component binds it.
func FreePort() (int, error) {
	handedOut.Lock()
	defer handedOut.Unlock()
	// A port already handed out stays held while the next one is asked
	// for, so that the kernel cannot offer it again.
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
		if !handedOut.ports[port] {
			handedOut.ports[port] = true
			return port, nil
		}
	}
}
