package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// lab is a network the test owns: a network namespace holding a bridge
// (10.78.0.1/24), into which machines are plugged — other network
// namespaces through veth pairs, VMs through taps. Nothing in it routes
// anywhere else, so the machines can reach only each other and the lab.
type lab struct {
	t      testing.TB
	ns     string // the lab's namespace, named k2os-<random>
	prefix string
	n      int
}

const labSubnet = "10.78.0"

// requireLab skips unless network namespaces can be made here.
func requireLab(t testing.TB) {
	t.Helper()
	skip := t.Skipf
	if os.Getenv("CI") != "" {
		skip = t.Fatalf
	}
	if os.Geteuid() != 0 {
		skip("the lab network needs root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		skip("ip not installed (.ci/run installs iproute2)")
	}
}

func newLab(t testing.TB) *lab {
	t.Helper()
	b := make([]byte, 3)
	rand.Read(b)
	l := &lab{t: t, prefix: "k2os" + hex.EncodeToString(b)}
	l.ns = l.prefix
	mustRun(t, "ip", "netns", "add", l.ns)
	t.Cleanup(func() {
		for i := 1; i <= l.n; i++ {
			exec.Command("ip", "netns", "del", fmt.Sprintf("%s-m%d", l.prefix, i)).Run()
		}
		exec.Command("ip", "netns", "del", l.ns).Run()
	})
	l.in("ip", "link", "set", "lo", "up")
	l.in("ip", "link", "add", "br0", "type", "bridge")
	l.in("ip", "addr", "add", labSubnet+".1/24", "dev", "br0")
	l.in("ip", "link", "set", "br0", "up")
	return l
}

// in runs a command inside the lab's namespace and fails the test on error.
func (l *lab) in(args ...string) string {
	l.t.Helper()
	return mustRun(l.t, append([]string{"ip", "netns", "exec", l.ns}, args...)...)
}

// command is a command to run inside namespace ns.
func nsCommand(ctx context.Context, ns string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns}, args...)...)
}

// addNamespace makes a machine namespace plugged into the bridge with
// address labSubnet.<host>/24 and a default route to the lab, and returns
// its name.
func (l *lab) addNamespace(host int) string {
	l.t.Helper()
	l.n++
	ns := fmt.Sprintf("%s-m%d", l.prefix, l.n)
	mustRun(l.t, "ip", "netns", "add", ns)
	veth := fmt.Sprintf("veth%d", l.n)
	l.in("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
	l.in("ip", "link", "set", veth, "master", "br0", "up")
	in := func(args ...string) { mustRun(l.t, append([]string{"ip", "netns", "exec", ns}, args...)...) }
	in("ip", "link", "set", "lo", "up")
	in("ip", "addr", "add", fmt.Sprintf("%s.%d/24", labSubnet, host), "dev", "eth0")
	in("ip", "link", "set", "eth0", "up")
	in("ip", "route", "add", "default", "via", labSubnet+".1")
	return ns
}

func mustRun(t testing.TB, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}
