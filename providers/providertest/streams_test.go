package providertest_test

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"k2.dev/k2/providers/providertest"
	"k2.dev/k2/providers/sdk"
)

// busyProvider reports progress and writes console output from many
// goroutines at once, and from one it leaves running after the call
// returned — as providers that work on machines in parallel do.
type busyProvider struct {
	sdk.UnimplementedProvider
	workers, events int
}

func (p *busyProvider) Create(ctx context.Context, req *sdk.CreateRequest) (*sdk.CreateResponse, error) {
	var wg sync.WaitGroup
	start := make(chan struct{}) // all at once: the stream's first Send (its header) is the racy one
	for w := range p.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for i := range p.events {
				req.Report(fmt.Sprintf("m%d", w), "step %d", i)
			}
		}()
	}
	close(start)
	wg.Wait()
	go func() {
		time.Sleep(20 * time.Millisecond)
		req.Report("late", "after the call returned")
	}()
	return &sdk.CreateResponse{Machines: []sdk.Machine{{ID: "1", Name: "m0", State: sdk.StateRunning}}}, nil
}

func (p *busyProvider) Console(ctx context.Context, req *sdk.ConsoleRequest) error {
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range p.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for range p.events {
				_, _ = req.Output.Write([]byte("x"))
			}
		}()
	}
	close(start)
	wg.Wait()
	go func() {
		time.Sleep(20 * time.Millisecond)
		_, _ = req.Output.Write([]byte("late"))
	}()
	return nil
}

// TestStreamsTakeConcurrentWrites: progress reported and console output
// written from many goroutines at once all reach k2 through the plugin's
// gRPC streams (the SDK's, as Connect serves them), with the call's result; what a provider sends after the
// call returned is dropped, not a failure (gRPC streams take one Send at
// a time: unserialised, they failed with "SendHeader called multiple
// times").
func TestStreamsTakeConcurrentWrites(t *testing.T) {
	const workers, events = 16, 25
	p := providertest.Connect(t, func() sdk.Provider { return &busyProvider{workers: workers, events: events} })
	for round := range 50 {
		var mu sync.Mutex
		got := 0
		resp, err := p.Create(context.Background(), &sdk.CreateRequest{RequestID: "r", OnProgress: func(sdk.Progress) {
			mu.Lock()
			got++
			mu.Unlock()
		}})
		if err != nil || len(resp.Machines) != 1 {
			t.Fatalf("round %d: Create: %v %+v", round, err, resp)
		}
		mu.Lock()
		if got != workers*events {
			t.Errorf("round %d: %d progress events, want %d", round, got, workers*events)
		}
		mu.Unlock()

		var out bytes.Buffer
		if err := p.Console(context.Background(), &sdk.ConsoleRequest{MachineID: "1", Output: &out}); err != nil {
			t.Fatalf("round %d: Console: %v", round, err)
		}
		if out.Len() != workers*events {
			t.Errorf("round %d: %d console bytes, want %d", round, out.Len(), workers*events)
		}
	}
	time.Sleep(50 * time.Millisecond) // the late writes: dropped, no panic
}
