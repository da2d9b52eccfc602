package memtrim

import (
	"context"
	"encoding/json"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"testing"
	"time"
)

// rssFileKB reads RssFile (resident pages backed by files) of this process.
func rssFileKB(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "RssFile:"); ok {
			n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no RssFile in /proc/self/status")
	return 0
}

// TestUnmapExecutable unmaps the test binary's own code and read-only data
// and checks that its file-backed resident set drops and that the process
// keeps working (code and data fault back in).
func TestUnmapExecutable(t *testing.T) {
	// Touch a fair amount of code first.
	if _, err := json.Marshal(map[string]any{"a": []int{1, 2}, "b": t.Name()}); err != nil {
		t.Fatal(err)
	}
	before := rssFileKB(t)
	n, err := UnmapExecutable()
	if err != nil {
		t.Fatal(err)
	}
	after := rssFileKB(t)
	t.Logf("advised %d KiB of mappings; RssFile %d → %d KiB", n>>10, before, after)
	if n < 1<<20 {
		t.Errorf("advised only %d bytes: the executable's mappings were not found", n)
	}
	if after >= before {
		t.Errorf("RssFile did not drop: %d → %d KiB", before, after)
	}
	// Still works: code and read-only data come back from the file.
	out, err := json.Marshal(struct{ X string }{"still here"})
	if err != nil || string(out) != `{"X":"still here"}` {
		t.Fatalf("after unmapping: %s, %v", out, err)
	}
}

func TestReadOnlyMappings(t *testing.T) {
	smaps := t.TempDir() + "/smaps"
	const exe = "/usr/local/bin/k2 x"
	// As /proc/self/smaps shows a dynamically linked binary: its RELRO
	// mapping (relocated, then made read-only) holds anonymous pages.
	content := `00400000-05a54000 r-xp 00000000 fe:00 1234 /usr/local/bin/k2 x
Size:              90448 kB
Anonymous:             0 kB
VmFlags: rd ex mr mw me
05a54000-0bc83000 r--p 05654000 fe:00 1234 /usr/local/bin/k2 x
Size:             100540 kB
Anonymous:             0 kB
0bc80000-0bc83000 r--p 0b880000 fe:00 1234 /usr/local/bin/k2 x
Size:                 12 kB
Anonymous:            12 kB
0bc83000-0be65000 rw-p 0b883000 fe:00 1234 /usr/local/bin/k2 x
Anonymous:           100 kB
0be65000-0be70000 r--p 00000000 fe:00 99 /usr/lib/other.so
Anonymous:             0 kB
27cc06000000-27cc13800000 rw-p 00000000 00:00 0
7ffd1000-7ffd2000 r--s 00000000 fe:00 1234 /usr/local/bin/k2 x
`
	if err := os.WriteFile(smaps, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := readOnlyMappings(smaps, exe)
	if err != nil {
		t.Fatal(err)
	}
	want := []addrRange{{0x400000, 0x5a54000}, {0x5a54000, 0xbc83000}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("got %x, want %x (the RELRO mapping with anonymous pages must be left alone)", got, want)
	}
	if err := os.WriteFile(smaps, []byte("zz-yy r-xp 0 0 0 "+exe+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := readOnlyMappings(smaps, exe); err == nil {
		t.Fatal("a malformed line was accepted")
	}
}

func TestGCStateSwitches(t *testing.T) {
	p := GCPolicy{Idle: 25, Busy: 100, BusyRate: 10, QuietFor: 10 * time.Second}
	s := gcState{policy: p, percent: -1}
	t0 := time.Unix(1000, 0)
	steps := []struct {
		at      time.Duration
		rate    float64
		want    int
		changed bool
	}{
		{0, 1, 25, true},                 // idle from the start
		{1 * time.Second, 2, 25, false},  // still idle: no change
		{2 * time.Second, 50, 100, true}, // busy at once
		{5 * time.Second, 1, 100, false}, // quiet, but not for 10 s yet
		{11 * time.Second, 60, 100, false},
		{20 * time.Second, 1, 100, false}, // 9 s after the last busy sample
		{21 * time.Second, 1, 25, true},   // 10 s quiet: idle again
		{22 * time.Second, 10, 100, true}, // exactly BusyRate counts as busy
	}
	for _, st := range steps {
		got, changed := s.next(st.rate, t0.Add(st.at))
		if got != st.want || changed != st.changed {
			t.Errorf("at +%s rate %.0f: got GOGC %d (changed %v), want %d (changed %v)", st.at, st.rate, got, changed, st.want, st.changed)
		}
	}
}

// TestGCPolicyRunApplies runs the policy for real and checks it set the
// collector's target: this process allocates little while it waits, so the
// idle target applies.
func TestGCPolicyRunApplies(t *testing.T) {
	if os.Getenv("GOGC") != "" || os.Getenv("GOMEMLIMIT") != "" {
		t.Skip("GOGC/GOMEMLIMIT set: the policy leaves the collector alone by design")
	}
	old := debug.SetGCPercent(100)
	defer debug.SetGCPercent(old)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		GCPolicy{Idle: 37, Busy: 100, BusyRate: 1 << 40, Every: 10 * time.Millisecond, QuietFor: time.Second}.Run(ctx)
	}()
	deadline := time.Now().Add(5 * time.Second)
	for {
		s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
		metrics.Read(s)
		cur := s[0].Value.Uint64()
		if cur == 37 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GOGC is %d, want the idle target 37", cur)
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
}
