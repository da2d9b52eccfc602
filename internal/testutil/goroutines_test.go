package testutil_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"k2.dev/k2/internal/component"
	"k2.dev/k2/internal/testutil"
)

// A goroutine a k2 package started is found until it returns; the
// manager's Run goroutines are k2 code (internal/component).
func TestK2Goroutines(t *testing.T) {
	stop := make(chan struct{})
	running := make(chan struct{})
	m := component.NewManager(nil, component.Func("sleeper", func(ctx context.Context) error {
		close(running)
		<-stop
		return nil
	}))
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	<-running
	left := testutil.K2Goroutines()
	if len(left) != 1 || !strings.Contains(left[0], "k2.dev/k2/internal/component") {
		t.Fatalf("K2Goroutines = %q, want the sleeper's", left)
	}
	close(stop)
	if err := m.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if left := testutil.WaitNoK2Goroutines(5 * time.Second); len(left) > 0 {
		t.Fatalf("left after Stop: %q", left)
	}
}
