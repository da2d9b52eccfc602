package netns

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// Forwarder relays the connections made to a listener in the caller's
// own namespace to an address inside another namespace: how programs on
// the host (kubectl, a test's clients, a provider) reach a server that
// lives where they have no route.
type Forwarder struct {
	ln     net.Listener
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Forward listens on listen (such as "127.0.0.1:0") and relays each
// connection to target (TCP) inside the namespace at path, until Close.
func Forward(listen, path, target string) (*Forwarder, error) {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	f := &Forwarder{ln: ln, cancel: cancel}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f.wg.Add(1)
			go func() {
				defer f.wg.Done()
				relay(ctx, c, path, target)
			}()
		}
	}()
	return f, nil
}

// Addr is the address it listens on.
func (f *Forwarder) Addr() string { return f.ln.Addr().String() }

// Close stops listening, ends the relays in flight and waits for them.
func (f *Forwarder) Close() error {
	err := f.ln.Close()
	f.cancel()
	f.wg.Wait()
	return err
}

// relay copies between c and a connection to target inside the namespace
// until both sides are done or ctx ends.
func relay(ctx context.Context, c net.Conn, path, target string) {
	defer c.Close()
	var up net.Conn
	err := Do(path, func() (err error) {
		up, err = net.DialTimeout("tcp", target, 10*time.Second)
		return err
	})
	if err != nil {
		return
	}
	defer up.Close()
	stop := context.AfterFunc(ctx, func() { c.Close(); up.Close() })
	defer stop()
	done := make(chan struct{}, 2)
	cp := func(dst, src net.Conn) {
		_, err := io.Copy(dst, src)
		// Pass on the end of one direction; the other may still have more.
		if tc, ok := dst.(*net.TCPConn); ok && (err == nil || errors.Is(err, io.EOF)) {
			_ = tc.CloseWrite()
		}
		done <- struct{}{}
	}
	go cp(up, c)
	go cp(c, up)
	<-done
	<-done
}
