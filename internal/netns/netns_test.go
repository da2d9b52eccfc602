package netns

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// TestListenAndDialInside: a listener made in a new namespace is reached
// from inside it and not from the test's own namespace, and the test's
// threads stay where they were.
func TestListenAndDialInside(t *testing.T) {
	own, err := os.Readlink("/proc/self/ns/net") // the main thread's: the process's, to ip netns pids
	if err != nil {
		t.Fatal(err)
	}
	path := newNamespace(t)
	ln, err := Listen(path, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("inside"))
			c.Close()
		}
	}()
	c, err := Dial(path, ln.Addr().String())
	if err != nil {
		t.Fatalf("dial inside: %v", err)
	}
	buf := make([]byte, 6)
	if _, err := c.Read(buf); err != nil || string(buf) != "inside" {
		t.Fatalf("read %q, %v", buf, err)
	}
	c.Close()
	if c, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		c.Close()
		t.Fatalf("the namespace's listener %s answered in the test's own namespace", ln.Addr())
	}
	if err := Do("/run/netns/k2netns-none", func() error { return nil }); err == nil {
		t.Fatal("a namespace that does not exist: no error")
	}

	// Many calls at once, on whichever threads the runtime picks (the
	// main thread among them, at times): afterwards every thread of the
	// process is back in the test's own namespace.
	for range 20 {
		var wg sync.WaitGroup
		for range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := Do(path, func() error { return nil }); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
	}
	tasks, _ := filepath.Glob("/proc/self/task/*/ns/net")
	for _, task := range tasks {
		if ns, err := os.Readlink(task); err == nil && ns != own {
			t.Errorf("%s is in %s after Do returned, not the test's %s", task, ns, own)
		}
	}
}

// TestForward: a client in the test's namespace reaches a server inside
// another through Forward, both ways, with the end of each direction
// passed on; Close ends a relay still open.
func TestForward(t *testing.T) {
	path := newNamespace(t)
	ln, err := Listen(path, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() { // an echo server that answers once the client has said all
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				b, _ := io.ReadAll(c)
				c.Write(append([]byte("echo "), b...))
			}()
		}
	}()
	f, err := Forward("127.0.0.1:0", path, ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", f.Addr())
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("hello"))
	c.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(c)
	c.Close()
	if err != nil || string(got) != "echo hello" {
		t.Fatalf("through the forward: %q %v, want %q", got, err, "echo hello")
	}

	// A relay left open (the client never ends its side) ends with Close.
	open, err := net.Dial("tcp", f.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()
	open.Write([]byte("x"))
	closed := make(chan error, 1)
	go func() { closed <- f.Close() }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not end the relay in flight")
	}
	open.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(open); errors.Is(err, os.ErrDeadlineExceeded) {
		t.Error("the client's side stayed open after Close") // its end is EOF or a reset
	}
}

// newNamespace makes a network namespace (its loopback up) for t and
// returns its path; it is removed when t ends.
func newNamespace(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("network namespaces need root")
	}
	b := make([]byte, 4)
	rand.Read(b)
	name := "k2netns-" + hex.EncodeToString(b)
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Skipf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	path := "/run/netns/" + name
	if err := Do(path, func() error { return exec.Command("ip", "link", "set", "lo", "up").Run() }); err != nil {
		t.Fatal(err)
	}
	return path
}
