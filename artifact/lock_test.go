package artifact_test

import (
	"os/exec"
	"testing"
	"time"
)

// TestStoreWriteLock holds the store's lock from another process (flock(1))
// and checks that a build waits for it, then succeeds.
func TestStoreWriteLock(t *testing.T) {
	if _, err := exec.LookPath("flock"); err != nil {
		t.Skip("flock(1) not installed")
	}
	s := newStore(t)
	holder := exec.Command("flock", s.Dir()+".lock", "sleep", "0.6")
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	defer holder.Wait()
	time.Sleep(150 * time.Millisecond) // let it take the lock
	start := time.Now()
	mustBuild(t, s, helloDir(t), "hello:v1", nil)
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Errorf("build took %v: it did not wait for the lock", d)
	}
}
