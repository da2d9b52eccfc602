package testutil

import (
	"runtime"
	"strings"
	"time"
)

// Module is the import path prefix of k2's own code.
const Module = "k2.dev/k2/"

// K2Goroutines returns the stacks of the live goroutines, other than the
// caller's, that run k2 code or were started by it: a frame, or the
// "created by" line, in a package under Module outside a _test.go file.
// Goroutines that Kubernetes or other libraries start from their own code
// are not counted, so after a server or agent stopped the list names what
// k2 left running.
func K2Goroutines() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	blocks := strings.Split(string(buf), "\n\n")
	var out []string
	for _, b := range blocks[1:] { // the first is the caller's
		if runsK2(b) {
			out = append(out, b)
		}
	}
	return out
}

// runsK2 reports whether a goroutine's stack has a k2 frame outside tests.
func runsK2(stack string) bool {
	lines := strings.Split(stack, "\n")
	for i := 1; i+1 < len(lines); i++ {
		fn := strings.TrimPrefix(lines[i], "created by ")
		if !strings.HasPrefix(fn, Module) {
			continue
		}
		file, _, _ := strings.Cut(strings.TrimSpace(lines[i+1]), ":")
		if !strings.HasSuffix(file, "_test.go") && !strings.Contains(file, "/internal/testutil/") {
			return true
		}
	}
	return false
}

// WaitNoK2Goroutines polls K2Goroutines until it is empty or d passed
// (goroutines told to stop take a moment to return), and returns what is
// still running.
func WaitNoK2Goroutines(d time.Duration) []string {
	deadline := time.Now().Add(d)
	for {
		left := K2Goroutines()
		if len(left) == 0 || time.Now().After(deadline) {
			return left
		}
		time.Sleep(50 * time.Millisecond)
	}
}
