package memtrim

import (
	"context"
	"log/slog"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// GCPolicy sets the garbage collector's target (GOGC) by how fast the
// process allocates. Go's default, 100, lets the heap grow to twice what is
// live before collecting; an idle server then sits at about twice its live
// heap. When the allocation rate is low a small target costs next to nothing
// (collections are rare either way), so an idle process runs with Idle; as
// soon as it allocates faster than BusyRate it switches to Busy, and it goes
// back after QuietFor below that rate.
type GCPolicy struct {
	Idle, Busy int           // GOGC percentages
	BusyRate   float64       // bytes allocated per second that count as busy
	Every      time.Duration // how often the rate is sampled
	QuietFor   time.Duration // how long below BusyRate before Idle again
	// Hold keeps Idle for this long before sampling starts: a process
	// started under the idle target leaves far fewer half-used heap spans
	// behind than one whose start-up heap was allowed to double (start-up
	// allocates fast, so sampling would pick Busy at once).
	Hold time.Duration
	Log  *slog.Logger
}

// DefaultGCPolicy is what k2's long-running processes use.
var DefaultGCPolicy = GCPolicy{Idle: 25, Busy: 100, BusyRate: 32 << 20, Every: time.Second, QuietFor: 10 * time.Second}

// Run applies the policy until ctx ends, starting with Idle. It does nothing
// when the user set GOGC or GOMEMLIMIT: their choice wins.
func (p GCPolicy) Run(ctx context.Context) {
	if os.Getenv("GOGC") != "" || os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	debug.SetGCPercent(p.Idle)
	select {
	case <-ctx.Done():
		return
	case <-time.After(p.Hold):
	}
	sample := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	read := func() uint64 {
		metrics.Read(sample)
		if sample[0].Value.Kind() != metrics.KindUint64 {
			return 0
		}
		return sample[0].Value.Uint64()
	}
	st := gcState{policy: p, percent: p.Idle}
	prev, prevAt := read(), time.Now()
	t := time.NewTicker(p.Every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			cur := read()
			rate := float64(cur-prev) / now.Sub(prevAt).Seconds()
			prev, prevAt = cur, now
			if pct, changed := st.next(rate, now); changed {
				debug.SetGCPercent(pct)
				if p.Log != nil {
					p.Log.Debug("GC target", "GOGC", pct, "alloc_MBps", int(rate/(1<<20)))
				}
			}
		}
	}
}

// gcState decides the target from the rate samples; kept apart from Run so
// tests drive it with made-up rates and times.
type gcState struct {
	policy   GCPolicy
	percent  int
	lastBusy time.Time
	everBusy bool
}

func (s *gcState) next(rate float64, now time.Time) (int, bool) {
	want := s.policy.Idle
	if rate >= s.policy.BusyRate {
		s.lastBusy = now
	}
	if !s.lastBusy.IsZero() && now.Sub(s.lastBusy) < s.policy.QuietFor {
		want = s.policy.Busy
	}
	if want == s.percent {
		return want, false
	}
	s.percent = want
	return want, true
}
