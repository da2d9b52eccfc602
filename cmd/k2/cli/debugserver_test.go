package cli

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"k2.dev/k2/internal/component"
)

// TestDebugServer: --debug-addr takes loopback addresses only, serves
// pprof while its component runs, and nothing once it is stopped.
func TestDebugServer(t *testing.T) {
	if _, err := newDebugServer("0.0.0.0:6060", nil); err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Errorf("newDebugServer(0.0.0.0:6060) = %v, want an error asking for a loopback address", err)
	}
	d, err := newDebugServer("127.0.0.1:0", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	m := component.NewManager(nil, d)
	ctx := context.Background()
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	url := "http://" + d.ln.Addr().String() + "/debug/pprof/"
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "goroutine") {
		t.Errorf("GET %s: %s\n%s", url, resp.Status, body)
	}
	if err := m.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if resp, err := http.Get(url); err == nil {
		resp.Body.Close()
		t.Errorf("GET %s after Stop: %s, want a refused connection", url, resp.Status)
	}
}
